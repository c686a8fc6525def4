//! Where a client command finds the server and its tokens: a flag, else its
//! environment variable (clap reads both), else the per-user config file,
//! else the default. The config file is optional; it holds string keys in
//! TOML syntax:
//!
//! ```toml
//! url = "https://api.example.com"
//! publish_token = "chp_…"
//! read_token = "chr_…"
//! ```

use std::path::{Path, PathBuf};

use super::{ClientError, ConnArgs};

/// The REST API a laptop's `chantra serve` answers on.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8081";

/// What a command connects with, every source applied.
#[derive(Debug, Clone)]
pub struct Settings {
    /// REST API base URL, without a trailing slash.
    pub url: String,
    pub publish_token: Option<String>,
    pub read_token: Option<String>,
    pub json: bool,
}

impl Settings {
    pub fn resolve(conn: &ConnArgs) -> Result<Self, ClientError> {
        let file = ConfigFile::load()?;
        let pick = |flag: &Option<String>, key: &str| {
            flag.clone().filter(|v| !v.is_empty()).or_else(|| file.get(key).map(str::to_owned))
        };
        let url = pick(&conn.url, "url").unwrap_or_else(|| DEFAULT_URL.to_owned());
        let url = url.trim_end_matches('/').to_owned();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(ClientError::usage(format!("the server URL `{url}` must start with http:// or https://")));
        }
        Ok(Self {
            url,
            publish_token: pick(&conn.token, "publish_token"),
            read_token: pick(&conn.read_token, "read_token"),
            json: conn.json,
        })
    }

    /// The publish token, or the usage error that says how to give one.
    pub fn publish_token(&self) -> Result<&str, ClientError> {
        self.publish_token
            .as_deref()
            .ok_or_else(|| ClientError::usage("no publish token: pass --token chp_… or set CHANTRA_PUBLISH_TOKEN"))
    }
}

/// The parsed config file: (key, value) pairs, possibly none.
#[derive(Debug, Default)]
struct ConfigFile {
    entries: Vec<(String, String)>,
}

impl ConfigFile {
    fn get(&self, key: &str) -> Option<&str> {
        self.entries.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// CHANTRA_CONFIG (which must exist), else the per-user file (if any).
    fn load() -> Result<Self, ClientError> {
        let (path, required) = match std::env::var_os("CHANTRA_CONFIG").filter(|v| !v.is_empty()) {
            Some(path) => (PathBuf::from(path), true),
            None => match default_path() {
                Some(path) => (path, false),
                None => return Ok(Self::default()),
            },
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => parse(&text).map_err(|err| ClientError::usage(format!("{}: {err}", path.display()))),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound && !required => Ok(Self::default()),
            Err(err) => Err(ClientError::usage(format!("cannot read the config file {}: {err}", path.display()))),
        }
    }
}

/// `$XDG_CONFIG_HOME/chantra/client.toml`, else `~/.config/chantra/client.toml`.
fn default_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".config")))?;
    Some(base.join("chantra").join("client.toml"))
}

/// The keys the file may set: a typo is an error, not a silent default.
const KEYS: [&str; 3] = ["url", "publish_token", "read_token"];

/// Parses the subset of TOML the file needs: `key = "string"` lines,
/// comments and blank lines.
fn parse(text: &str) -> Result<ConfigFile, String> {
    let mut entries = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = |what: &str| format!("line {}: {what}", n + 1);
        let (key, value) = line.split_once('=').ok_or_else(|| at("expected key = \"value\""))?;
        let key = key.trim();
        if !KEYS.contains(&key) {
            return Err(at(&format!("unknown key `{key}` (known: {})", KEYS.join(", "))));
        }
        let value = string_value(value.trim()).ok_or_else(|| at("the value must be a quoted string"))?;
        entries.push((key.to_owned(), value));
    }
    Ok(ConfigFile { entries })
}

/// A TOML basic ("…", with \" \\ escapes) or literal ('…') string, then an optional comment.
fn string_value(text: &str) -> Option<String> {
    let rest_ok = |rest: &str| rest.trim().is_empty() || rest.trim_start().starts_with('#');
    if let Some(body) = text.strip_prefix('\'') {
        let end = body.find('\'')?;
        return rest_ok(&body[end + 1..]).then(|| body[..end].to_owned());
    }
    let body = text.strip_prefix('"')?;
    let mut value = String::new();
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return rest_ok(&body[i + 1..]).then_some(value),
            '\\' => match chars.next()?.1 {
                '"' => value.push('"'),
                '\\' => value.push('\\'),
                _ => return None,
            },
            c => value.push(c),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_keys_comments_and_both_string_kinds() {
        let file = parse("# mine\nurl = \"https://api.example.com\"  # prod\n\npublish_token='chp_x'\n").unwrap();
        assert_eq!(file.get("url"), Some("https://api.example.com"));
        assert_eq!(file.get("publish_token"), Some("chp_x"));
        assert_eq!(file.get("read_token"), None);
    }

    #[test]
    fn rejects_unknown_keys_and_bare_values() {
        assert!(parse("uri = \"x\"").unwrap_err().contains("unknown key `uri`"));
        assert!(parse("url = http://x").unwrap_err().contains("line 1"));
        assert!(parse("url = \"unterminated").is_err());
    }

    #[test]
    fn escapes_in_basic_strings() {
        assert_eq!(string_value(r#""a\"b\\c""#).as_deref(), Some("a\"b\\c"));
    }
}
