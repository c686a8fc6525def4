//! `chantra channel`, `chantra grant` and `chantra pub`: one REST call each,
//! its answer printed for a person, or as the server's JSON with `--json`.

use std::io::{IsTerminal as _, Read as _};

use serde_json::{Value, json};

use super::http::{call, client};
use super::settings::Settings;
use super::{ChannelAction, ClientError, GrantAction, PubArgs, write_stdout};

/// A publish from a string argument: what curl's `-d` would say it is.
const TEXT: &str = "text/plain; charset=utf-8";
const BINARY: &str = "application/octet-stream";

pub async fn channel(action: ChannelAction) -> Result<(), ClientError> {
    match action {
        ChannelAction::Create { private, conn } => {
            let s = Settings::resolve(&conn)?;
            let visibility = if private { "private" } else { "public" };
            let request = client()?.post(format!("{}/v1/channels", s.url)).json(&json!({ "visibility": visibility }));
            let created = call(request, "creating a channel").await?;
            print(&s, &created, || {
                let mut text = format!(
                    "channel        {}  ({})\nurl            {}\npublish token  {}\n",
                    str_of(&created, "channel_id"),
                    str_of(&created, "visibility"),
                    str_of(&created, "url"),
                    str_of(&created, "publish_token"),
                );
                if let Some(read) = created.get("read_token").and_then(Value::as_str) {
                    text.push_str(&format!("read token     {read}\n"));
                }
                // Servers with issue 16 name the first grant, so it can be revoked later.
                if let Some(grant) = created.get("read_grant_id").and_then(Value::as_str) {
                    text.push_str(&format!("read grant     {grant}\n"));
                }
                text.push_str("The tokens are shown once: keep them (e.g. export CHANTRA_PUBLISH_TOKEN=…).\n");
                text
            })
        }
        ChannelAction::Get { channel, conn } => {
            let s = Settings::resolve(&conn)?;
            let id = channel_id(&channel)?;
            let request =
                client()?.get(format!("{}/v1/channels/{id}", s.url)).header("x-publish-token", s.publish_token()?);
            let info = call(request, "reading the channel").await?;
            print(&s, &info, || describe_channel(&info))
        }
        ChannelAction::Delete { channel, conn } => {
            let s = Settings::resolve(&conn)?;
            let id = channel_id(&channel)?;
            let request =
                client()?.delete(format!("{}/v1/channels/{id}", s.url)).header("x-publish-token", s.publish_token()?);
            call(request, "deleting the channel").await?;
            print(&s, &json!({ "deleted": true, "channel_id": id }), || format!("deleted channel {id}\n"))
        }
    }
}

pub async fn grant(action: GrantAction) -> Result<(), ClientError> {
    match action {
        GrantAction::Create { channel, label, expires_in, conn } => {
            let s = Settings::resolve(&conn)?;
            let id = channel_id(&channel)?;
            let mut body = serde_json::Map::new();
            if let Some(label) = label {
                body.insert("label".into(), label.into());
            }
            if let Some(secs) = expires_in {
                body.insert("expires_in_seconds".into(), secs.into());
            }
            let request = client()?
                .post(format!("{}/v1/channels/{id}/read-grants", s.url))
                .header("x-publish-token", s.publish_token()?)
                .json(&body);
            let created = call(request, "creating a read grant").await?;
            print(&s, &created, || {
                format!(
                    "grant       {}\nread token  {}\nexpires     {}\nThe read token is shown once: keep it.\n",
                    str_of(&created, "grant_id"),
                    str_of(&created, "read_token"),
                    created.get("expires_at").and_then(Value::as_str).unwrap_or("never"),
                )
            })
        }
        GrantAction::Revoke { channel, grant_id, conn } => {
            let s = Settings::resolve(&conn)?;
            let id = channel_id(&channel)?;
            let grant = uuid::Uuid::parse_str(&grant_id)
                .map_err(|_| ClientError::usage(format!("`{grant_id}` is not a grant id (a UUID)")))?;
            let request = client()?
                .post(format!("{}/v1/channels/{id}/read-grants/{grant}/revoke", s.url))
                .header("x-publish-token", s.publish_token()?);
            let answer = call(request, "revoking the read grant").await?;
            let answer =
                if answer.is_null() { json!({ "revoked": true, "grant_id": grant.to_string() }) } else { answer };
            print(&s, &answer, || format!("revoked grant {grant}\n"))
        }
    }
}

pub async fn publish(args: PubArgs) -> Result<(), ClientError> {
    let s = Settings::resolve(&args.conn)?;
    let id = channel_id(&args.channel)?;
    let token = s.publish_token()?.to_owned();
    let (body, guessed_type) = message_body(args.message.as_deref())?;
    let content_type = args.content_type.unwrap_or_else(|| guessed_type.to_owned());
    let mut request = client()?
        .post(format!("{}/v1/channels/{id}/publish", s.url))
        .header("x-publish-token", token)
        .header(reqwest::header::CONTENT_TYPE, content_type)
        .body(body);
    if let Some(ttl) = args.ttl {
        request = request.query(&[("ttl", ttl)]);
    }
    if let Some(key) = args.idempotency_key {
        request = request.header("idempotency-key", key);
    }
    let published = call(request, "publishing").await?;
    print(&s, &published, || {
        format!(
            "published {} ({} bytes, {}), expires {}\n",
            str_of(&published, "message_id"),
            published.get("payload_size").and_then(Value::as_u64).unwrap_or_default(),
            str_of(&published, "content_type"),
            str_of(&published, "expires_at"),
        )
    })
}

/// The bytes to publish and the content type they default to: the MESSAGE
/// argument as text, `-` (or nothing, from a pipe) standard input, `@FILE` a file.
fn message_body(message: Option<&str>) -> Result<(Vec<u8>, &'static str), ClientError> {
    let bytes = match message {
        Some(text) if text != "-" && !text.starts_with('@') => return Ok((text.as_bytes().to_vec(), TEXT)),
        Some(file) if file.starts_with('@') => {
            let path = &file[1..];
            std::fs::read(path).map_err(|err| ClientError::other(format!("cannot read {path}: {err}")))?
        }
        None if std::io::stdin().is_terminal() => {
            return Err(ClientError::usage("no message: give it as an argument, `-` or @FILE, or pipe it in"));
        }
        _ => {
            let mut bytes = Vec::new();
            std::io::stdin()
                .read_to_end(&mut bytes)
                .map_err(|err| ClientError::other(format!("cannot read standard input: {err}")))?;
            bytes
        }
    };
    let kind = if std::str::from_utf8(&bytes).is_ok() { TEXT } else { BINARY };
    Ok((bytes, kind))
}

/// The channel id in CHANNEL: the id itself, or the last UUID segment of a
/// channel URL (`…/v1/public/{id}`, `…/channel/v1/private/{id}?token=…`).
pub fn channel_id(channel: &str) -> Result<String, ClientError> {
    if let Ok(id) = uuid::Uuid::parse_str(channel) {
        return Ok(id.to_string());
    }
    let found = url::Url::parse(channel).ok().and_then(|url| {
        let segments: Vec<String> = url.path_segments()?.map(str::to_owned).collect();
        segments.iter().rev().find_map(|s| uuid::Uuid::parse_str(s).ok())
    });
    found
        .map(|id| id.to_string())
        .ok_or_else(|| ClientError::usage(format!("`{channel}` is neither a channel id nor a channel URL")))
}

/// Prints `value` as JSON with `--json`, else the text `human` makes.
fn print(s: &Settings, value: &Value, human: impl FnOnce() -> String) -> Result<(), ClientError> {
    let text = if s.json { format!("{value}\n") } else { human() };
    // A closed stdout (`| head`) after a successful call is still a success.
    let _ = write_stdout(text.as_bytes());
    Ok(())
}

fn str_of<'a>(value: &'a Value, key: &str) -> &'a str {
    value.get(key).and_then(Value::as_str).unwrap_or("-")
}

fn describe_channel(info: &Value) -> String {
    let mut text = format!(
        "channel         {}  ({})\nurl             {}\ncreated         {}\nlast published  {}\n\
         live messages   {}\nidle deletion   {}\n",
        str_of(info, "channel_id"),
        str_of(info, "visibility"),
        str_of(info, "url"),
        str_of(info, "created_at"),
        info.get("last_published_at").and_then(Value::as_str).unwrap_or("never"),
        info.get("live_messages").and_then(Value::as_u64).unwrap_or_default(),
        str_of(info, "idle_deletion_at"),
    );
    let grants = info.get("read_grants").and_then(Value::as_array).cloned().unwrap_or_default();
    if !grants.is_empty() {
        text.push_str("read grants:\n");
        for grant in &grants {
            text.push_str(&format!(
                "  {}  {:8} {}\n",
                str_of(grant, "grant_id"),
                str_of(grant, "state"),
                grant.get("label").and_then(Value::as_str).unwrap_or(""),
            ));
        }
        if info.get("read_grants_truncated").and_then(Value::as_bool).unwrap_or(false) {
            text.push_str(&format!("  … {} in all\n", info["read_grants_total"]));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_channel_is_an_id_or_any_channel_url() {
        let id = "0193a0e8-0000-7000-8000-000000000001";
        for given in [
            id.to_owned(),
            format!("http://localhost:8070/v1/public/{id}"),
            format!("https://example.com/channel/v1/private/{id}?token=chr_x"),
            format!("http://localhost:8070/v1/public/{id}/json"),
        ] {
            assert_eq!(channel_id(&given).unwrap(), id, "{given}");
        }
        let err = channel_id("http://localhost/v1/public/nope").unwrap_err();
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn a_message_argument_is_utf8_text() {
        let (body, kind) = message_body(Some("héllo")).unwrap();
        assert_eq!((body.as_slice(), kind), ("héllo".as_bytes(), TEXT));
    }

    #[test]
    fn a_file_argument_is_sent_as_its_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blob");
        std::fs::write(&path, [0u8, 159, 146, 150]).unwrap();
        let (body, kind) = message_body(Some(&format!("@{}", path.display()))).unwrap();
        assert_eq!((body, kind), (vec![0u8, 159, 146, 150], BINARY));
        assert_eq!(message_body(Some("@/no/such/file")).unwrap_err().exit_code(), 1);
    }
}
