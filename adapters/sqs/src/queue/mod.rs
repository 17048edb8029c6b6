//! [`SqsQueue`]: the vote queue on SQS. This module is the hot path
//! (publish, receive, delete, extend); [`dead_letters`] holds inspection
//! (depths, dead-letter peeks) and dead-letter replay.

mod dead_letters;

pub use dead_letters::ReplayProgress;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::config::http::HttpResponse;
use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry, Message, MessageAttributeValue,
    MessageSystemAttributeName, QueueAttributeName, SendMessageBatchRequestEntry,
};
use chrono::DateTime;
use livevote_domain::{ElectionId, VoteRecord};
use livevote_ports::{
    AckReport, DeadLetter, Delivery, DeliveryContent, DeliveryTag, PoisonReason, QueueError, QueueInspector,
    QueueStats, VoteQueue, VoteSource,
};

use crate::message::{self, SCHEMA_VERSION};

/// SQS allows at most 10 entries per batch call.
const MAX_BATCH_ENTRIES: usize = 10;
/// SQS allows a receive to wait at most 20 s.
const MAX_WAIT: Duration = Duration::from_secs(20);
/// How long `peek_dead_letters` hides the messages it looks at.
const PEEK_VISIBILITY_SECS: i32 = 30;

/// Where the queues are and how to pack and retry.
#[derive(Debug, Clone)]
pub struct SqsConfig {
    pub queue_url: String,
    pub dead_letter_queue_url: String,
    /// Upper bound of one message body. Ten of them plus attributes must fit
    /// the 256 KiB limit of one `SendMessageBatch` call.
    pub max_message_bytes: usize,
    /// Upper bound of the bodies of one `SendMessageBatch` call.
    pub max_batch_bytes: usize,
    /// Attempts per entry for throttling and server-side failures.
    pub max_attempts: u32,
    /// First retry delay; doubled per attempt, with full jitter.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// A native dead-letter move task that moves nothing for this long is
    /// cancelled and the replay continues by receive, send, delete (some
    /// SQS-compatible servers accept the task and never run it).
    pub move_task_stall: Duration,
}

impl SqsConfig {
    pub fn new(queue_url: impl Into<String>, dead_letter_queue_url: impl Into<String>) -> Self {
        Self {
            queue_url: queue_url.into(),
            dead_letter_queue_url: dead_letter_queue_url.into(),
            max_message_bytes: 24 * 1024,
            max_batch_bytes: 250 * 1024,
            max_attempts: 5,
            base_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_secs(1),
            move_task_stall: Duration::from_secs(15),
        }
    }
}

/// The vote queue on SQS. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: Client,
    config: SqsConfig,
}

/// How a failed call or entry should be treated.
#[derive(Debug)]
enum Failure {
    Retry(QueueError),
    Final(QueueError),
}

fn classify<E>(e: &SdkError<E, HttpResponse>) -> Failure
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let text = format!("{}", aws_sdk_sqs::error::DisplayErrorContext(e));
    match e {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            Failure::Retry(QueueError::Unavailable(text))
        }
        SdkError::ServiceError(service) => {
            let code = service.err().code().unwrap_or("");
            let status = service.raw().status().as_u16();
            if is_throttling(code) {
                Failure::Retry(QueueError::Throttled(text))
            } else if status >= 500 {
                Failure::Retry(QueueError::Unavailable(text))
            } else {
                Failure::Final(QueueError::Rejected(text))
            }
        }
        _ => Failure::Final(QueueError::Unknown(text)),
    }
}

/// A call's error as a [`QueueError`], whether or not a retry could help.
fn queue_error<E>(e: SdkError<E, HttpResponse>) -> QueueError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match classify(&e) {
        Failure::Retry(err) | Failure::Final(err) => err,
    }
}

fn is_throttling(code: &str) -> bool {
    matches!(
        code,
        "ThrottlingException"
            | "RequestThrottled"
            | "AWS.SimpleQueueService.RequestThrottled"
            | "KmsThrottled"
    ) || code.ends_with("Throttling")
}

/// The delays between the attempts of one call: doubling from
/// `base_backoff` up to `max_backoff`, each plus a random jitter of up to
/// itself, `max_attempts - 1` of them.
fn retry_delays(config: &SqsConfig) -> backon::ExponentialBackoff {
    use backon::BackoffBuilder;
    backon::ExponentialBuilder::default()
        .with_min_delay(config.base_backoff)
        .with_max_delay(config.max_backoff)
        .with_jitter()
        .with_max_times(config.max_attempts.saturating_sub(1) as usize)
        .build()
}

impl SqsQueue {
    /// The adapter retries by itself (per entry, with jittered backoff), so
    /// the client's own retries are switched off: the two would multiply.
    pub fn new(client: Client, config: SqsConfig) -> Self {
        let no_retries = client
            .config()
            .to_builder()
            .retry_config(aws_sdk_sqs::config::retry::RetryConfig::disabled())
            .build();
        Self {
            client: Client::from_conf(no_retries),
            config,
        }
    }

    pub fn config(&self) -> &SqsConfig {
        &self.config
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Sends messages (bodies with their first vote's correlation id) to
    /// `queue_url` in `SendMessageBatch` calls; one outcome per message.
    async fn send_messages(
        &self,
        queue_url: &str,
        messages: &[OutgoingMessage],
    ) -> Vec<Result<(), QueueError>> {
        let mut outcomes: Vec<Option<Result<(), QueueError>>> = vec![None; messages.len()];
        let mut start = 0;
        while start < messages.len() {
            let mut end = start;
            let mut bytes = 0;
            while end < messages.len()
                && end - start < MAX_BATCH_ENTRIES
                && (end == start || bytes + messages[end].body.len() <= self.config.max_batch_bytes)
            {
                bytes += messages[end].body.len();
                end += 1;
            }
            let results = self.send_call(queue_url, &messages[start..end]).await;
            for (i, r) in results.into_iter().enumerate() {
                outcomes[start + i] = Some(r);
            }
            start = end;
        }
        outcomes
            .into_iter()
            .map(|o| o.unwrap_or_else(|| Err(QueueError::Unknown("message not sent".into()))))
            .collect()
    }

    /// One `SendMessageBatch` of at most ten messages, retrying the entries
    /// (or the call) that failed for a reason a retry can fix.
    async fn send_call(&self, queue_url: &str, messages: &[OutgoingMessage]) -> Vec<Result<(), QueueError>> {
        let mut outcomes: Vec<Option<Result<(), QueueError>>> = vec![None; messages.len()];
        let mut pending: Vec<usize> = (0..messages.len()).collect();
        let mut last_error = QueueError::Unknown("no attempt made".into());
        let mut delays = retry_delays(&self.config);
        for attempt in 0..self.config.max_attempts {
            if attempt > 0 {
                let Some(delay) = delays.next() else { break };
                tokio::time::sleep(delay).await;
            }
            let entries: Vec<SendMessageBatchRequestEntry> = pending
                .iter()
                .map(|&i| messages[i].entry(i))
                .collect::<Result<_, _>>()
                .expect("entries are built from valid parts");
            match self
                .client
                .send_message_batch()
                .queue_url(queue_url)
                .set_entries(Some(entries))
                .send()
                .await
            {
                Ok(out) => {
                    for ok in out.successful() {
                        if let Ok(i) = ok.id().parse::<usize>()
                            && i < messages.len()
                        {
                            outcomes[i] = Some(Ok(()));
                        }
                    }
                    for failed in out.failed() {
                        let Ok(i) = failed.id().parse::<usize>() else {
                            continue;
                        };
                        if i >= messages.len() {
                            continue;
                        }
                        let why = format!("{}: {}", failed.code(), failed.message().unwrap_or(""));
                        if failed.sender_fault() && !is_throttling(failed.code()) {
                            outcomes[i] = Some(Err(QueueError::Rejected(why)));
                        } else {
                            last_error = if is_throttling(failed.code()) {
                                QueueError::Throttled(why)
                            } else {
                                QueueError::Unavailable(why)
                            };
                        }
                    }
                }
                Err(e) => match classify(&e) {
                    Failure::Retry(err) => last_error = err,
                    Failure::Final(err) => {
                        for &i in &pending {
                            outcomes[i] = Some(Err(err.clone()));
                        }
                    }
                },
            }
            // Entries with no outcome yet (retryable failures, or missing from
            // the answer) go again; nothing counts as sent unless SQS said so.
            pending.retain(|&i| outcomes[i].is_none());
            if pending.is_empty() {
                break;
            }
            tracing::debug!(attempt, pending = pending.len(), error = %last_error, "retrying SendMessageBatch entries");
        }
        outcomes
            .into_iter()
            .map(|o| o.unwrap_or_else(|| Err(last_error.clone())))
            .collect()
    }

    async fn receive_from(
        &self,
        queue_url: &str,
        max_messages: usize,
        wait: Duration,
        visibility: Option<i32>,
    ) -> Result<Vec<Message>, QueueError> {
        let max = i32::try_from(max_messages.clamp(1, MAX_BATCH_ENTRIES)).unwrap_or(10);
        let wait = i32::try_from(wait.min(MAX_WAIT).as_secs()).unwrap_or(20);
        let out = self
            .client
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(max)
            .wait_time_seconds(wait)
            .set_visibility_timeout(visibility)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
            .message_attribute_names("All")
            .send()
            .await
            .map_err(queue_error)?;
        Ok(out.messages.unwrap_or_default())
    }

    async fn delete_from(&self, queue_url: &str, handles: &[String]) -> Result<Vec<usize>, QueueError> {
        let mut failed = Vec::new();
        for (chunk_index, chunk) in handles.chunks(MAX_BATCH_ENTRIES).enumerate() {
            let entries: Vec<DeleteMessageBatchRequestEntry> = chunk
                .iter()
                .enumerate()
                .map(|(i, h)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(h)
                        .build()
                })
                .collect::<Result<_, _>>()
                .map_err(|e| QueueError::Unknown(e.to_string()))?;
            let out = self
                .client
                .delete_message_batch()
                .queue_url(queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(queue_error)?;
            for f in out.failed() {
                if let Ok(i) = f.id().parse::<usize>() {
                    failed.push(chunk_index * MAX_BATCH_ENTRIES + i);
                }
            }
        }
        Ok(failed)
    }

    async fn set_visibility(
        &self,
        queue_url: &str,
        handles: &[String],
        seconds: i32,
    ) -> Result<(), QueueError> {
        for chunk in handles.chunks(MAX_BATCH_ENTRIES) {
            let entries: Vec<ChangeMessageVisibilityBatchRequestEntry> = chunk
                .iter()
                .enumerate()
                .map(|(i, h)| {
                    ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(h)
                        .visibility_timeout(seconds)
                        .build()
                })
                .collect::<Result<_, _>>()
                .map_err(|e| QueueError::Unknown(e.to_string()))?;
            let out = self
                .client
                .change_message_visibility_batch()
                .queue_url(queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(queue_error)?;
            if let Some(f) = out.failed().first() {
                return Err(QueueError::Unavailable(format!(
                    "changing visibility: {}: {}",
                    f.code(),
                    f.message().unwrap_or("")
                )));
            }
        }
        Ok(())
    }
}

/// A message to send: body and attributes.
#[derive(Debug, Clone)]
struct OutgoingMessage {
    body: String,
    correlation_id: String,
    schema_version: String,
    votes: usize,
}

impl OutgoingMessage {
    fn entry(&self, index: usize) -> Result<SendMessageBatchRequestEntry, aws_sdk_sqs::error::BuildError> {
        let attr = |kind: &str, value: &str| {
            MessageAttributeValue::builder()
                .data_type(kind)
                .string_value(value)
                .build()
        };
        SendMessageBatchRequestEntry::builder()
            .id(index.to_string())
            .message_body(&self.body)
            .message_attributes("schemaVersion", attr("Number", &self.schema_version)?)
            .message_attributes("correlationId", attr("String", &self.correlation_id)?)
            .message_attributes("votes", attr("Number", &self.votes.to_string())?)
            .build()
    }
}

/// Groups votes into message bodies of at most `max_bytes` (a single vote
/// larger than that still gets a message of its own). Returns the bodies with
/// the range of votes each carries.
fn pack(votes: &[VoteRecord], max_bytes: usize) -> Vec<(std::ops::Range<usize>, OutgoingMessage)> {
    let parts: Vec<String> = votes.iter().map(message::encode_vote).collect();
    let mut out = Vec::new();
    let mut start = 0;
    while start < parts.len() {
        let mut end = start;
        let mut size = message::ENVELOPE_BYTES;
        // Each vote after the envelope costs its bytes plus a separating comma.
        while end < parts.len() && (end == start || size + parts[end].len() < max_bytes) {
            size += parts[end].len() + 1;
            end += 1;
        }
        out.push((
            start..end,
            OutgoingMessage {
                body: message::assemble(&parts[start..end]),
                correlation_id: votes[start].correlation_id.as_str().to_owned(),
                schema_version: SCHEMA_VERSION.to_string(),
                votes: end - start,
            },
        ));
        start = end;
    }
    out
}

fn decode_delivery(m: &Message) -> Result<Delivery, QueueError> {
    let tag = m
        .receipt_handle()
        .ok_or_else(|| QueueError::Unknown("a received message has no receipt handle".into()))?;
    let system = |name: MessageSystemAttributeName| m.attributes().and_then(|a| a.get(&name)).cloned();
    let receive_count = system(MessageSystemAttributeName::ApproximateReceiveCount)
        .and_then(|c| c.parse().ok())
        .unwrap_or(1);
    let sent_at = system(MessageSystemAttributeName::SentTimestamp)
        .and_then(|ms| ms.parse::<i64>().ok())
        .and_then(DateTime::from_timestamp_millis);
    let declared_version = m
        .message_attributes()
        .and_then(|a| a.get("schemaVersion"))
        .and_then(|v| v.string_value())
        .map(|v| v.parse::<u64>());
    let content = match declared_version {
        Some(Ok(v)) if v != SCHEMA_VERSION => DeliveryContent::Poison(PoisonReason::UnknownVersion(v)),
        Some(Err(e)) => {
            DeliveryContent::Poison(PoisonReason::Undecodable(format!("schemaVersion attribute: {e}")))
        }
        _ => match message::decode(m.body().unwrap_or_default()) {
            Ok(votes) => DeliveryContent::Votes(votes),
            Err(reason) => DeliveryContent::Poison(reason),
        },
    };
    Ok(Delivery {
        tag: DeliveryTag(tag.to_owned()),
        message_id: m.message_id().unwrap_or_default().to_owned(),
        receive_count,
        sent_at,
        content,
    })
}

impl VoteQueue for SqsQueue {
    async fn publish(&self, votes: &[VoteRecord]) -> Vec<Result<(), QueueError>> {
        let packed = pack(votes, self.config.max_message_bytes);
        let messages: Vec<OutgoingMessage> = packed.iter().map(|(_, m)| m.clone()).collect();
        let sent = self.send_messages(&self.config.queue_url, &messages).await;
        let mut outcomes = Vec::with_capacity(votes.len());
        for ((range, _), result) in packed.iter().zip(sent) {
            for _ in range.clone() {
                outcomes.push(result.clone());
            }
        }
        outcomes
    }
}

impl VoteSource for SqsQueue {
    async fn receive(&self, max_messages: usize, wait: Duration) -> Result<Vec<Delivery>, QueueError> {
        self.receive_from(&self.config.queue_url, max_messages, wait, None)
            .await?
            .iter()
            .map(decode_delivery)
            .collect()
    }

    async fn ack(&self, tags: &[DeliveryTag]) -> Result<AckReport, QueueError> {
        let handles: Vec<String> = tags.iter().map(|t| t.0.clone()).collect();
        let failed = self.delete_from(&self.config.queue_url, &handles).await?;
        Ok(AckReport {
            failed: failed.into_iter().filter_map(|i| tags.get(i).cloned()).collect(),
        })
    }

    async fn extend_visibility(&self, tags: &[DeliveryTag], by: Duration) -> Result<(), QueueError> {
        let handles: Vec<String> = tags.iter().map(|t| t.0.clone()).collect();
        // SQS caps a visibility timeout at 12 hours.
        let seconds = i32::try_from(by.as_secs().clamp(1, 43_200)).unwrap_or(43_200);
        self.set_visibility(&self.config.queue_url, &handles, seconds)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration as ChronoDuration, Utc};
    use livevote_domain::Election;
    use livevote_testkit::fixtures::{new_election, record};

    #[test]
    fn packing_respects_the_size_limit_and_keeps_every_vote_in_order() {
        let now = Utc::now();
        let e = Election::create(
            ElectionId::generate(),
            new_election("Final", &["A", "B"], now, now + ChronoDuration::hours(1)),
            now,
            livevote_domain::CandidateId::generate,
        )
        .unwrap();
        let votes: Vec<VoteRecord> = (0..1000)
            .map(|i| record(&e, &format!("auth0|{i}"), i % 2, now))
            .collect();
        let packed = pack(&votes, 24 * 1024);
        assert!(packed.len() > 1);
        let mut next = 0;
        for (range, m) in &packed {
            assert_eq!(range.start, next);
            next = range.end;
            assert!(m.body.len() <= 24 * 1024, "{} bytes", m.body.len());
            assert_eq!(message::decode(&m.body).unwrap(), votes[range.clone()].to_vec());
            assert_eq!(m.votes, range.len());
        }
        assert_eq!(next, votes.len());
        assert!(
            packed[0].0.len() >= 50,
            "many votes per message: {}",
            packed[0].0.len()
        );
    }

    #[test]
    fn backoff_stays_within_its_cap() {
        let config = SqsConfig::new("q", "dlq");
        let delays: Vec<Duration> = retry_delays(&config).collect();
        assert_eq!(delays.len(), config.max_attempts as usize - 1);
        for delay in delays {
            // The jitter adds up to the current delay to it: never more than twice the cap.
            assert!(
                delay >= config.base_backoff && delay <= config.max_backoff * 2,
                "{delay:?}"
            );
        }
    }
}
