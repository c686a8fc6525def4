//! A poll (`?poll=1`, or `Accept: application/json`): the messages after
//! the cursor as one JSON document, then the response ends —
//!
//! ```json
//! {"messages":[message objects],"next_cursor":"<id>"|null,"has_more":bool,"gap":null|{"oldest_available_id","requested_after"}}
//! ```
//!
//! It reads the reader's stream (`Service::open_stream`, the replay SSE
//! resumes with; `ReaderStream::next_backlog`) until the backlog is drained
//! or the page is full, so the
//! cursor, gap and access rules are exactly the stream's. A page holds at
//! most `limit` messages (1 to SSE_REPLAY_MAX, default [`DEFAULT_LIMIT`])
//! and PAGE_MAX_BYTES of payloads (at least one message); it is built in one
//! buffer, each payload written straight into it.

use std::time::Duration;

use bytes::Bytes;

use chantra_core::domain::MessageId;
use chantra_core::error::AppError;
use chantra_core::service::{Cursor, Gap, ReaderStream, Revocation, StreamEvent};

use super::message::{capacity_hint, write_object};
use super::sse::gap_json;
use crate::http::extract::query_param;

/// Messages a poll returns when it names no `limit`.
pub const DEFAULT_LIMIT: u64 = 100;

/// `?limit=`: 1 to `max` (SSE_REPLAY_MAX), default [`DEFAULT_LIMIT`] (or `max` if lower).
pub fn limit(query: Option<&str>, max: u64) -> Result<u64, AppError> {
    match query_param(query, "limit") {
        None => Ok(DEFAULT_LIMIT.min(max)),
        Some(raw) => raw.trim().parse::<u64>().ok().filter(|l| (1..=max).contains(l)).ok_or_else(|| {
            AppError::bad_request("invalid_limit", format!("limit must be a whole number from 1 to {max}"))
        }),
    }
}

/// Reads `stream`'s backlog into a poll page. A deletion or revocation met
/// on the way answers as it would have at the start (404, 401); a stream
/// that cannot finish within `timeout` (store or database down) is 503.
pub async fn collect(
    stream: ReaderStream,
    cursor: Cursor,
    limit: u64,
    max_bytes: u64,
    timeout: Duration,
) -> Result<Bytes, AppError> {
    tokio::time::timeout(timeout, page(stream, cursor, limit, max_bytes)).await.map_err(|_| AppError::Timeout)?
}

async fn page(mut stream: ReaderStream, cursor: Cursor, limit: u64, max_bytes: u64) -> Result<Bytes, AppError> {
    let mut out = b"{\"messages\":[".to_vec();
    let mut gap: Option<Gap> = None;
    let (mut count, mut bytes) = (0u64, 0u64);
    let mut last: Option<MessageId> = None;
    // Whether the page stopped before the backlog did.
    let has_more = loop {
        if count == limit {
            break stream.has_backlog().await;
        }
        let Some(event) = stream.next_backlog().await else {
            // Drained; or ended early (shutting down, no room in the replay
            // budget): then the rest follows next time.
            break stream.ended();
        };
        let (row, payload) = match event {
            StreamEvent::Gap(found) => {
                gap = Some(found);
                continue;
            }
            StreamEvent::Replayed { row, payload } => (row, payload),
            StreamEvent::Live(live) => (live.row.clone(), live.payload.clone()),
            StreamEvent::KeepAlive => continue,
            StreamEvent::Deleted => return Err(AppError::ChannelNotFound),
            StreamEvent::Revoked(Revocation::Revoked) => return Err(AppError::GrantRevoked),
            StreamEvent::Revoked(Revocation::Expired) => return Err(AppError::GrantExpired),
        };
        let size = payload.len() as u64;
        if count > 0 && bytes.saturating_add(size) > max_bytes {
            break true;
        }
        if count > 0 {
            out.push(b',');
        }
        out.reserve(capacity_hint(&row, &payload));
        write_object(&mut out, "", &row, &payload);
        count += 1;
        bytes += size;
        last = Some(row.id);
    };
    let given = match cursor {
        Cursor::After(after) => Some(after),
        Cursor::Now | Cursor::Oldest => None,
    };
    // After the last message given; else where the reader was (a gap to
    // nothing leaves the cursor where it was: nothing after it is kept).
    let next_cursor = last.or(given).map(|id| id.to_string());
    out.extend_from_slice(b"],\"next_cursor\":");
    out.extend_from_slice(serde_json::to_string(&next_cursor).unwrap_or_default().as_bytes());
    out.extend_from_slice(format!(",\"has_more\":{has_more},\"gap\":").as_bytes());
    match &gap {
        Some(gap) => out.extend_from_slice(gap_json(gap).as_bytes()),
        None => out.extend_from_slice(b"null"),
    }
    out.push(b'}');
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits() {
        assert_eq!(limit(None, 1000).unwrap(), 100);
        assert_eq!(limit(None, 10).unwrap(), 10);
        assert_eq!(limit(Some("limit=1000"), 1000).unwrap(), 1000);
        for bad in ["limit=0", "limit=1001", "limit=-1", "limit=x", "limit="] {
            assert_eq!(limit(Some(bad), 1000).unwrap_err().code(), "invalid_limit", "{bad}");
        }
    }
}
