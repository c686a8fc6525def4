//! The SSE parser of `chantra sub` (src/client/sse.rs) against an
//! independent one, `eventsource-stream`: any stream of fields, comments and
//! blank lines, with LF, CRLF or lone-CR line ends, cut into arbitrary
//! chunks, gives the same events (name, data, last event id) in the same
//! order, and the `retry:` values the server sent.

use chantra::client::sse::{Item, Parser};
use eventsource_stream::Eventsource as _;
use futures::StreamExt as _;
use proptest::prelude::*;

use crate::cases;

/// One line of a stream, without its end.
fn line() -> impl Strategy<Value = String> {
    let value = "[a-z0-9 :]{0,8}";
    prop_oneof![
        value.prop_map(|v| format!("data: {v}")),
        value.prop_map(|v| format!("data:{v}")),
        Just("data".to_owned()),
        "[a-z0-9]{0,6}".prop_map(|v| format!("id: {v}")),
        "[a-z]{0,6}".prop_map(|v| format!("event: {v}")),
        "[0-9]{1,5}".prop_map(|v| format!("retry: {v}")),
        value.prop_map(|v| format!(":{v}")),
        value.prop_map(|v| format!("bogus: {v}")),
        Just(String::new()),
    ]
}

fn line_end() -> impl Strategy<Value = &'static str> {
    prop_oneof![Just("\n"), Just("\r\n"), Just("\r")]
}

/// A stream: lines with random ends, closed by a blank line (so the last event is dispatched).
fn stream() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec((line(), line_end()), 0..40).prop_map(|lines| {
        let mut text: String = lines.into_iter().map(|(line, end)| line + end).collect();
        text.push_str("\n\n");
        text.into_bytes()
    })
}

/// What a reader sees: (event, data, last event id) per event, and the retry values.
type Seen = (Vec<(String, String, String)>, Vec<u64>);

fn ours(chunks: &[Vec<u8>]) -> Seen {
    let mut parser = Parser::new(1 << 20);
    let (mut events, mut retries) = (Vec::new(), Vec::new());
    for chunk in chunks {
        for item in parser.feed(chunk).expect("within the bound") {
            match item {
                Item::Retry(ms) => retries.push(ms),
                Item::Event(event) => events.push((event.event, event.data, event.id)),
            }
        }
    }
    (events, retries)
}

fn theirs(chunks: &[Vec<u8>]) -> Vec<(String, String, String)> {
    let stream = futures::stream::iter(chunks.iter().cloned().map(Ok::<_, std::convert::Infallible>)).eventsource();
    futures::executor::block_on(stream.collect::<Vec<_>>())
        .into_iter()
        .map(|event| event.expect("a valid stream"))
        .map(|event| (event.event, event.data, event.id))
        .collect()
}

/// Cuts `bytes` at the given positions.
fn cut(bytes: &[u8], mut at: Vec<usize>) -> Vec<Vec<u8>> {
    at.iter_mut().for_each(|a| *a %= bytes.len() + 1);
    at.sort_unstable();
    let mut chunks = Vec::new();
    let mut start = 0;
    for a in at.into_iter().chain([bytes.len()]) {
        chunks.push(bytes[start..a].to_vec());
        start = a;
    }
    chunks
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(256)))]

    #[test]
    fn same_events_as_an_independent_parser(bytes in stream(), at in proptest::collection::vec(any::<usize>(), 0..8)) {
        let chunks = cut(&bytes, at);
        let (events, _) = ours(&chunks);
        prop_assert_eq!(events, theirs(&chunks));
        // However it is cut, the same as in one piece.
        prop_assert_eq!(ours(&chunks), ours(std::slice::from_ref(&bytes)));
    }
}
