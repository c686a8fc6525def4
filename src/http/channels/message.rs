//! A message as public readers see it — the `data` of an SSE `message`
//! event, an item of a poll, a line of an NDJSON stream:
//!
//! ```json
//! {"id":"…","channel_id":"…","content_type":"…","encoding":"json|text|base64","payload":…,"created_at":"…","expires_at":"…"}
//! ```
//!
//! `encoding` says how `payload` carries the bytes ([`Encoding`]): a JSON
//! payload is the document itself, text is a JSON string, anything else is
//! base64 — so `curl -N` shows people what was published. The internal read
//! API and MCP keep their own (base64) form.
//!
//! The object is written straight into the frame's buffer: the payload is
//! never first copied into a base64 `String` or a parsed JSON value, so a
//! frame costs its own bytes and nothing more. Its text never contains a raw
//! line break (JSON strings escape them; a JSON payload is minified), so it
//! fits one SSE `data:` line and one NDJSON line.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Serialize;

use chantra_core::db::entity::message;

use crate::http::extract::{check_json, is_json};

/// How a message's `payload` field carries its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// A JSON content type (`application/json`, `application/*+json`) whose
    /// bytes are valid JSON: `payload` is that JSON value, minified.
    Json,
    /// A textual content type (`text/*`, `application/xml`, `*+xml`, or JSON
    /// that does not parse) whose bytes are UTF-8: `payload` is a string —
    /// unless escaping makes that string longer than the base64 (text made
    /// mostly of control characters, each `\u00XX`): then base64.
    Text,
    /// Anything else: `payload` is standard padded base64.
    Base64,
}

impl Encoding {
    /// The encoding of `payload` stored as `content_type` (parameters such
    /// as `charset` are ignored).
    ///
    /// A payload is never written larger than its base64: a minified JSON
    /// document is at most its own size, and text is only sent as a string
    /// when its escaped form is no longer than base64. So every frame's
    /// size is bounded by its payload size alone — what the hub's ring
    /// (SSE_LIVE_FRAME_MAX_BYTES) and the replay budget reserve by.
    pub fn of(content_type: &str, payload: &[u8]) -> Self {
        let json = is_json(content_type);
        if json && check_json(payload).is_ok() {
            return Encoding::Json;
        }
        if (json || is_textual(content_type))
            && std::str::from_utf8(payload).is_ok()
            && escaped_len(payload) <= base64::encoded_len(payload.len(), true).unwrap_or(usize::MAX)
        {
            return Encoding::Text;
        }
        Encoding::Base64
    }

    fn as_str(self) -> &'static str {
        match self {
            Encoding::Json => "json",
            Encoding::Text => "text",
            Encoding::Base64 => "base64",
        }
    }
}

/// The length of `text` inside a JSON string as serde_json escapes it:
/// `"`, `\\` and the five short control escapes take two bytes, other
/// control characters six (`\u00XX`), everything else itself.
fn escaped_len(text: &[u8]) -> usize {
    text.iter()
        .map(|&byte| match byte {
            b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 2,
            0..0x20 => 6,
            _ => 1,
        })
        .sum()
}

/// `text/*`, `application/xml` and any `+xml` type.
fn is_textual(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    essence.starts_with("text/") || essence == "application/xml" || essence.ends_with("+xml")
}

/// Bytes the object of `row` takes besides its payload and content type
/// (field names, two ids, two times), to size buffers in one allocation.
const OBJECT_OVERHEAD: usize = 320;

/// A capacity that holds the object of `row` (and a frame's head and tail)
/// without growing for most payloads: escapes in text are rare.
pub fn capacity_hint(row: &message::Model, payload: &[u8]) -> usize {
    base64::encoded_len(payload.len(), true).unwrap_or(payload.len()) + row.content_type.len() * 2 + OBJECT_OVERHEAD
}

/// Appends the message object of `row` and `payload` to `out`. `lead` is
/// written right after the opening brace: leading fields of a wrapper,
/// each followed by a comma (NDJSON's `"event":"message",`), or nothing.
pub fn write_object(out: &mut Vec<u8>, lead: &str, row: &message::Model, payload: &[u8]) {
    let encoding = Encoding::of(&row.content_type, payload);
    out.push(b'{');
    out.extend_from_slice(lead.as_bytes());
    out.extend_from_slice(b"\"id\":\"");
    // Ids are UUIDs: nothing to escape.
    out.extend_from_slice(row.id.to_string().as_bytes());
    out.extend_from_slice(b"\",\"channel_id\":\"");
    out.extend_from_slice(row.channel_id.to_string().as_bytes());
    out.extend_from_slice(b"\",\"content_type\":");
    write_json(out, &row.content_type);
    out.extend_from_slice(b",\"encoding\":\"");
    out.extend_from_slice(encoding.as_str().as_bytes());
    out.extend_from_slice(b"\",\"payload\":");
    match encoding {
        Encoding::Json => minify_json(out, payload),
        // Checked as UTF-8 by `Encoding::of`.
        Encoding::Text => write_json(out, std::str::from_utf8(payload).unwrap_or_default()),
        Encoding::Base64 => write_base64(out, payload),
    }
    out.extend_from_slice(b",\"created_at\":");
    write_json(out, &row.created_at);
    out.extend_from_slice(b",\"expires_at\":");
    write_json(out, &row.expires_at);
    out.push(b'}');
}

/// A string or time as JSON, escaped by serde_json straight into `out`.
fn write_json(out: &mut Vec<u8>, value: &(impl Serialize + ?Sized)) {
    // Writing strings and times to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, value);
}

/// `payload` as a quoted standard padded base64 string, encoded in place.
fn write_base64(out: &mut Vec<u8>, payload: &[u8]) {
    let len = base64::encoded_len(payload.len(), true).unwrap_or_default();
    out.push(b'"');
    let start = out.len();
    out.resize(start + len, 0);
    let written = STANDARD.encode_slice(payload, &mut out[start..]).unwrap_or_default();
    out.truncate(start + written);
    out.push(b'"');
}

/// Copies a valid JSON document without the whitespace outside its
/// strings: one line, every number and string byte for byte as sent (a
/// parse and re-serialisation could round numbers or reorder keys).
pub fn minify_json(out: &mut Vec<u8>, json: &[u8]) {
    out.reserve(json.len());
    let mut in_string = false;
    let mut escaped = false;
    for &byte in json {
        if in_string {
            out.push(byte);
            if escaped {
                escaped = false;
            } else if byte == b'\\' {
                escaped = true;
            } else if byte == b'"' {
                in_string = false;
            }
        } else {
            match byte {
                b' ' | b'\t' | b'\n' | b'\r' => {}
                b'"' => {
                    in_string = true;
                    out.push(byte);
                }
                _ => out.push(byte),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_follow_the_content_type_and_the_bytes() {
        for (content_type, payload, expected) in [
            ("application/json", &br#"{"a":1}"#[..], Encoding::Json),
            ("Application/JSON; charset=utf-8", b" [1, 2] ", Encoding::Json),
            ("application/ld+json", b"\"s\"", Encoding::Json),
            ("application/json", b"{not json", Encoding::Text),
            ("application/json", b"\xff{", Encoding::Base64),
            // Parses from a slice (serde_json skips a string's bytes), but is not UTF-8.
            ("application/json", b"[\"\xff\"]", Encoding::Base64),
            ("text/plain", "héllo".as_bytes(), Encoding::Text),
            ("text/csv; charset=latin1", b"caf\xe9", Encoding::Base64),
            ("application/xml", b"<a/>", Encoding::Text),
            ("image/svg+xml", b"<svg/>", Encoding::Text),
            ("application/octet-stream", b"plain ascii", Encoding::Base64),
            ("image/png", b"\x89PNG", Encoding::Base64),
            ("text/json", br#"{"a":1}"#, Encoding::Text),
            // Escaped, these would be longer than their base64.
            ("text/plain", b"\x01\x02\x03", Encoding::Base64),
            ("text/plain", b"\n\n\n", Encoding::Base64),
            ("text/plain", b"line one\nline two\n", Encoding::Text),
            // Valid JSON whatever its numbers: nothing is converted.
            ("application/json", b"[1e400, 123456789012345678901234567890]", Encoding::Json),
        ] {
            assert_eq!(Encoding::of(content_type, payload), expected, "{content_type} {payload:?}");
        }
    }

    #[test]
    fn escaped_length_is_what_serde_json_writes() {
        let all: Vec<u8> = (0u8..0x80).collect();
        for text in [&b""[..], b"plain", b"\"quoted\" \\ back", b"\x08\x0c\n\r\t", &all, "é😀\u{2028}".as_bytes()] {
            let written = serde_json::to_string(std::str::from_utf8(text).unwrap()).unwrap();
            assert_eq!(escaped_len(text) + 2, written.len(), "{text:?}");
        }
    }

    #[test]
    fn minify_keeps_strings_and_numbers_exact() {
        let mut out = Vec::new();
        let doc = "{ \"a b\" : [ 1.50 , -0.0, 1e400, 12345678901234567890 ],\n\t\"s\": \"x \\\" y\\\\\", \"u\":\"\u{2028} \" }\r\n";
        minify_json(&mut out, doc.as_bytes());
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text, "{\"a b\":[1.50,-0.0,1e400,12345678901234567890],\"s\":\"x \\\" y\\\\\",\"u\":\"\u{2028} \"}");
    }
}
