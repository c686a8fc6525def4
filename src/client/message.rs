//! One message as `chantra sub` receives it (the `data` of an SSE
//! `message` event): its payload's bytes whatever the encoding the server
//! chose, and the `--json` line that carries it on unchanged.

use base64::Engine as _;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::ClientError;

/// A message event's data; `encoding` is absent on servers older than issue 16 (base64).
#[derive(Deserialize)]
pub struct Message<'a> {
    pub id: String,
    pub channel_id: String,
    pub content_type: String,
    #[serde(default)]
    pub encoding: Option<String>,
    #[serde(borrow)]
    pub payload: &'a RawValue,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub expires_at: Option<String>,
}

impl Message<'_> {
    /// The payload's bytes, as the publisher sent them.
    pub fn bytes(&self) -> Result<Vec<u8>, ClientError> {
        let bad = |err: &dyn std::fmt::Display| ClientError::other(format!("message {}: bad payload: {err}", self.id));
        match self.encoding.as_deref().unwrap_or("base64") {
            "json" => Ok(self.payload.get().as_bytes().to_vec()),
            "text" => serde_json::from_str::<String>(self.payload.get()).map(String::into_bytes).map_err(|e| bad(&e)),
            "base64" => {
                let text: String = serde_json::from_str(self.payload.get()).map_err(|e| bad(&e))?;
                base64::engine::general_purpose::STANDARD.decode(text).map_err(|e| bad(&e))
            }
            other => Err(ClientError::other(format!(
                "message {}: unknown payload encoding `{other}` (a newer server? update chantra)",
                self.id
            ))),
        }
    }

    /// Shown as a line of text (else the raw bytes, as sent).
    pub fn is_text(&self, bytes: &[u8]) -> bool {
        matches!(self.encoding.as_deref(), Some("json" | "text")) || std::str::from_utf8(bytes).is_ok()
    }
}

/// `{"event":NAME,` + the rest of the data object, byte for byte (JSON
/// numbers stay exact); `"encoding":"base64"` added for an older server's messages.
pub fn tagged(name: &str, data: &str, add_base64: bool) -> String {
    let body = data.trim().strip_prefix('{').and_then(|b| b.strip_suffix('}')).unwrap_or_default().trim();
    let mut fields = vec![format!("\"event\":\"{name}\"")];
    if add_base64 {
        fields.push("\"encoding\":\"base64\"".to_owned());
    }
    if !body.is_empty() {
        fields.push(body.to_owned());
    }
    format!("{{{}}}\n", fields.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_keep_the_data_byte_for_byte() {
        let data = r#"{"id":"x","encoding":"json","payload":{"n":1.10,"big":123456789012345678901234567890}}"#;
        let line = tagged("message", data, false);
        assert_eq!(line, format!("{{\"event\":\"message\",{}\n", &data[1..]));
        let old = tagged("message", r#"{"id":"x","payload":"aGk="}"#, true);
        assert_eq!(old, "{\"event\":\"message\",\"encoding\":\"base64\",\"id\":\"x\",\"payload\":\"aGk=\"}\n");
        assert_eq!(tagged("deleted", "{}", false), "{\"event\":\"deleted\"}\n");
        assert_eq!(tagged("gap", r#"{"a":1}"#, false), "{\"event\":\"gap\",\"a\":1}\n");
    }

    #[test]
    fn payloads_decode_by_encoding() {
        let message = |data: &str| serde_json::from_str::<Message>(data).unwrap().bytes().unwrap();
        let head = r#""id":"i","channel_id":"c","content_type":"t""#;
        assert_eq!(message(&format!(r#"{{{head},"encoding":"json","payload":{{"n":1.10}}}}"#)), br#"{"n":1.10}"#);
        assert_eq!(message(&format!(r#"{{{head},"encoding":"text","payload":"h\u00e9"}}"#)), "hé".as_bytes());
        assert_eq!(message(&format!(r#"{{{head},"encoding":"base64","payload":"AP8="}}"#)), [0, 255]);
        assert_eq!(message(&format!(r#"{{{head},"payload":"aGk="}}"#)), b"hi");
    }
}
