//! The payload every published message carries: `<seq>:<sent µs>[:<padding>]`.
//! Latency comes from the timestamp inside the payload and order from the
//! sequence number, never from the server's event id — nchan's ids
//! (`<time>:<tag>`) say nothing about either.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

/// How a payload appears in an SSE event's data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
pub enum Format {
    /// Chantra: a JSON object whose `payload` field is the payload, as its
    /// `encoding` field says: `text` (a string), or `base64` (also when the
    /// field is absent: servers before text frames).
    Chantra,
    /// The data line is the payload itself (nchan's EventSource subscriber).
    Raw,
}

/// Sequence numbers above this are not ours (a stale message): ignored.
pub const MAX_SEQ: u64 = 50_000_000;

pub fn now_micros() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or_default()
}

/// The payload for message `seq`, stamped now and padded with 'x' to `size` bytes.
pub fn encode(seq: u64, size: usize) -> String {
    let mut body = format!("{seq}:{}:", now_micros());
    if body.len() < size {
        body.extend(std::iter::repeat_n('x', size - body.len()));
    }
    body
}

/// (seq, sent µs) from one event's data; None when the data is not ours.
pub fn decode(data: &str, format: Format) -> Option<(u64, u64)> {
    let decoded;
    let text = match format {
        Format::Raw => data,
        Format::Chantra => {
            // Scanned, not parsed: this runs for every event of every reader.
            // Our payloads are ASCII with nothing to escape, so the string
            // ends at the next quote.
            let payload = string_field(data, "payload")?;
            match string_field(data, "encoding") {
                Some("text") => payload,
                Some("base64") | None => {
                    decoded = String::from_utf8(STANDARD.decode(payload).ok()?).ok()?;
                    &decoded
                }
                Some(_) => return None,
            }
        }
    };
    let mut fields = text.trim().splitn(3, ':');
    let seq = fields.next()?.parse().ok().filter(|s| *s <= MAX_SEQ)?;
    let sent = fields.next()?.parse().ok()?;
    Some((seq, sent))
}

/// The value of the string field `name` of a flat JSON object, up to its
/// first quote (no escapes); `None` when there is no such string field.
fn string_field<'a>(data: &'a str, name: &str) -> Option<&'a str> {
    let key = format!("\"{name}\":\"");
    let start = data.find(&key)? + key.len();
    let end = start + data[start..].find('"')?;
    Some(&data[start..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_raw_and_chantra() {
        let payload = encode(42, 1024);
        assert_eq!(payload.len(), 1024);
        let (seq, sent) = decode(&payload, Format::Raw).unwrap();
        assert_eq!(seq, 42);
        assert!(sent > 0);
        let json =
            format!("{{\"id\":\"x\",\"payload\":\"{}\",\"content_type\":\"text/plain\"}}", STANDARD.encode(&payload));
        assert_eq!(decode(&json, Format::Chantra), Some((42, sent)));
        let tagged = format!(
            "{{\"id\":\"x\",\"content_type\":\"application/octet-stream\",\"encoding\":\"base64\",\"payload\":\"{}\"}}",
            STANDARD.encode(&payload)
        );
        assert_eq!(decode(&tagged, Format::Chantra), Some((42, sent)));
        let text =
            format!("{{\"id\":\"x\",\"content_type\":\"text/plain\",\"encoding\":\"text\",\"payload\":\"{payload}\"}}");
        assert_eq!(decode(&text, Format::Chantra), Some((42, sent)));
        assert_eq!(decode(r#"{"encoding":"json","payload":{"a":1}}"#, Format::Chantra), None);
        assert_eq!(decode("7:123", Format::Raw), Some((7, 123)));
        assert_eq!(decode("hello", Format::Raw), None);
    }
}
