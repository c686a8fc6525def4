//! An incremental Server-Sent Events parser (the WHATWG "event stream
//! interpretation"): bytes in, whatever the network delivered, events out.
//! Hand-written because it is small and `sub` needs two things a general
//! crate hides: the `retry:` hint as soon as it is read, and a bound on the
//! bytes one event may hold (a stream is an outside input).
//!
//! Lines end with LF, CRLF or a lone CR (also across chunk boundaries); a
//! leading BOM is skipped; `:` lines are comments (keep-alives); `data:`
//! lines join with LF; a blank line dispatches the event if it has data.

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// `event:` — "message" when absent.
    pub event: String,
    pub data: String,
    /// The last event id when it was dispatched: set by an `id:` field, kept
    /// by the following events until another changes it (as the standard says).
    pub id: String,
}

/// What the parser found in a chunk, in stream order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Event(Event),
    /// A `retry:` field: the reconnection time the server asks for, in milliseconds.
    Retry(u64),
}

/// The parser's state between chunks.
#[derive(Debug)]
pub struct Parser {
    /// The current, unfinished line.
    line: Vec<u8>,
    /// The previous chunk ended with CR: a LF starting this one belongs to it.
    after_cr: bool,
    /// Nothing read yet: a BOM may come first.
    at_start: bool,
    event: String,
    data: String,
    has_data: bool,
    /// The standard's "last event ID buffer": not reset between events.
    id: String,
    /// The most bytes one event (its lines together) may hold.
    max_event_bytes: usize,
    event_bytes: usize,
}

/// The event is larger than the parser accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TooLarge {
    pub limit: usize,
}

impl Parser {
    pub fn new(max_event_bytes: usize) -> Self {
        Self {
            line: Vec::new(),
            after_cr: false,
            at_start: true,
            event: String::new(),
            data: String::new(),
            has_data: false,
            id: String::new(),
            max_event_bytes,
            event_bytes: 0,
        }
    }

    /// Parses a chunk; returns the items it completed.
    pub fn feed(&mut self, mut chunk: &[u8]) -> Result<Vec<Item>, TooLarge> {
        let mut items = Vec::new();
        if self.at_start && !chunk.is_empty() {
            const BOM: &[u8] = b"\xEF\xBB\xBF";
            // A BOM split over chunks is not worth the state: servers send it whole or not at all.
            if let Some(rest) = chunk.strip_prefix(BOM) {
                chunk = rest;
            }
            self.at_start = false;
        }
        for &byte in chunk {
            if std::mem::take(&mut self.after_cr) && byte == b'\n' {
                continue;
            }
            match byte {
                b'\n' => self.end_line(&mut items),
                b'\r' => {
                    self.after_cr = true;
                    self.end_line(&mut items);
                }
                _ => {
                    self.event_bytes += 1;
                    if self.event_bytes > self.max_event_bytes {
                        return Err(TooLarge { limit: self.max_event_bytes });
                    }
                    self.line.push(byte);
                }
            }
        }
        Ok(items)
    }

    fn end_line(&mut self, items: &mut Vec<Item>) {
        let line = std::mem::take(&mut self.line);
        if line.is_empty() {
            self.dispatch(items);
            return;
        }
        let line = String::from_utf8_lossy(&line);
        if line.starts_with(':') {
            return; // a comment: keep-alive
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line.as_ref(), ""),
        };
        match field {
            "event" => self.event = value.to_owned(),
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "id" if !value.contains('\0') => self.id = value.to_owned(),
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                if let Ok(millis) = value.parse() {
                    items.push(Item::Retry(millis));
                }
            }
            _ => {} // unknown fields are ignored, as the standard says
        }
    }

    fn dispatch(&mut self, items: &mut Vec<Item>) {
        self.event_bytes = 0;
        let event = std::mem::take(&mut self.event);
        if !std::mem::take(&mut self.has_data) {
            self.data.clear();
            return;
        }
        let event = if event.is_empty() { "message".to_owned() } else { event };
        items.push(Item::Event(Event { event, data: std::mem::take(&mut self.data), id: self.id.clone() }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(chunks: &[&[u8]]) -> Vec<Item> {
        let mut parser = Parser::new(1 << 20);
        chunks.iter().flat_map(|c| parser.feed(c).unwrap()).collect()
    }

    fn event(name: &str, data: &str, id: &str) -> Item {
        Item::Event(Event { event: name.into(), data: data.into(), id: id.into() })
    }

    #[test]
    fn chantra_frames_parse_whole_and_byte_by_byte() {
        let stream: &[u8] = b"retry: 3000\n\n: keep-alive\n\nid: 01\nevent: message\ndata: {\"a\":1}\n\n\
            event: gap\ndata: {\"oldest_available_id\":null}\n\nevent: deleted\ndata: {}\n\n";
        let expected = vec![
            Item::Retry(3000),
            event("message", "{\"a\":1}", "01"),
            // The last event id stays until another id field changes it.
            event("gap", "{\"oldest_available_id\":null}", "01"),
            event("deleted", "{}", "01"),
        ];
        assert_eq!(parse_all(&[stream]), expected);
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(parse_all(&bytes), expected);
    }

    #[test]
    fn line_endings_crlf_and_lone_cr_even_split_across_chunks() {
        let expected = vec![event("message", "a\nb", "7")];
        assert_eq!(parse_all(&[b"id: 7\r\ndata: a\r\ndata: b\r\n\r\n"]), expected);
        assert_eq!(parse_all(&[b"id: 7\rdata: a\rdata: b\r\r"]), expected);
        assert_eq!(parse_all(&[b"id: 7\r", b"\ndata: a\r", b"\ndata: b\r", b"\n\r", b"\n"]), expected);
    }

    #[test]
    fn field_rules_of_the_standard() {
        // No space after the colon, a field without a colon, unknown fields, a bad retry, a BOM.
        let items = parse_all(&[b"\xEF\xBB\xBFdata:x\nbogus: 1\nretry: 12a\ndata\n\n"]);
        assert_eq!(items, vec![event("message", "x\n", "")]);
        // An event without data is not dispatched, and its type does not leak into the next.
        assert_eq!(parse_all(&[b"event: gap\n\ndata: y\n\n"]), vec![event("message", "y", "")]);
        // Only the first space is stripped.
        assert_eq!(parse_all(&[b"data:  two\n\n"]), vec![event("message", " two", "")]);
    }

    #[test]
    fn an_unfinished_event_waits_for_its_blank_line() {
        let mut parser = Parser::new(1024);
        assert!(parser.feed(b"id: 1\ndata: half").unwrap().is_empty());
        assert_eq!(parser.feed(b"\n\n").unwrap(), vec![event("message", "half", "1")]);
    }

    #[test]
    fn an_oversized_event_is_refused() {
        let mut parser = Parser::new(16);
        assert_eq!(parser.feed(b"data: 0123456789abcdef\n\n"), Err(TooLarge { limit: 16 }));
        // Within the bound, events keep coming: the count restarts at each event.
        let mut parser = Parser::new(16);
        for _ in 0..4 {
            assert_eq!(parser.feed(b"data: 0123456\n\n").unwrap().len(), 1);
        }
    }
}
