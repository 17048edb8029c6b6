//! Reading a Server-Sent Events response event by event, with a parser that
//! follows the specification (an event split across reads, CRLF line ends,
//! data on several lines), for the tests and the load generator.

use std::pin::Pin;

use eventsource_stream::{Event, EventStreamError, Eventsource};
use futures_util::Stream;

/// An event stream, or why it ended.
pub type Events = Pin<Box<dyn Stream<Item = Result<Event, EventStreamError<reqwest::Error>>> + Send>>;

/// The events of `response`, as they arrive.
pub fn events(response: reqwest::Response) -> Events {
    let chunks = futures_util::stream::unfold(response, |mut response| async move {
        match response.chunk().await {
            Ok(Some(bytes)) => Some((Ok(bytes), response)),
            Ok(None) => None,
            Err(e) => Some((Err(e), response)),
        }
    });
    Box::pin(chunks.eventsource())
}

#[cfg(test)]
mod tests {
    use eventsource_stream::Eventsource;
    use futures_util::StreamExt;

    #[tokio::test]
    async fn an_event_split_across_reads_is_one_event() {
        // The blank line that ends the first event arrives in two reads, the second event in CRLF.
        let reads: Vec<Result<&[u8], std::convert::Infallible>> = vec![
            Ok(b"event: RESULTS\nid: 1\ndata: {\"a\":"),
            Ok(b"1}\n"),
            Ok(b"\nevent: HEARTBEAT\r\ndata: x\r\n\r\n"),
        ];
        let events: Vec<_> = futures_util::stream::iter(reads).eventsource().collect().await;
        let events: Vec<_> = events.into_iter().map(Result::unwrap).collect();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].event, "RESULTS");
        assert_eq!(events[0].id, "1");
        assert_eq!(events[0].data, "{\"a\":1}");
        assert_eq!(events[1].event, "HEARTBEAT");
    }
}
