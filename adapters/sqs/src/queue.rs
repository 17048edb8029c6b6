//! [`SqsQueue`]: the vote queue on SQS (publish, consume, inspect, replay).

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

/// Progress of a dead-letter replay, reported after every batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayProgress {
    /// Messages moved back to the main queue so far.
    pub moved: u64,
    /// Messages whose send failed this run; they stay in the dead-letter queue.
    pub failed: u64,
    /// Messages left in the dead-letter queue because they cannot be
    /// processed (they do not decode, or have an unknown version): replayed,
    /// they would only come back.
    pub skipped: u64,
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

/// Full jitter: a random delay in `[0, min(max, base * 2^attempt))`.
fn backoff(config: &SqsConfig, attempt: u32) -> Duration {
    let cap = config
        .base_backoff
        .saturating_mul(1u32 << attempt.min(16))
        .min(config.max_backoff);
    let random = uuid::Uuid::new_v4().as_u128() as u64;
    let nanos = u64::try_from(cap.as_nanos()).unwrap_or(u64::MAX).max(1);
    Duration::from_nanos(random % nanos)
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
        for attempt in 0..self.config.max_attempts {
            if attempt > 0 {
                tokio::time::sleep(backoff(&self.config, attempt)).await;
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

    async fn depth(&self, queue_url: &str) -> Result<(u64, u64), QueueError> {
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(queue_url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .map_err(queue_error)?;
        let attrs = out.attributes.unwrap_or_default();
        let get = |name: QueueAttributeName| -> Result<u64, QueueError> {
            attrs
                .get(&name)
                .map(|v| v.parse::<u64>())
                .transpose()
                .map_err(|e| QueueError::Unknown(format!("queue attribute {name}: {e}")))
                .map(Option::unwrap_or_default)
        };
        Ok((
            get(QueueAttributeName::ApproximateNumberOfMessages)?,
            get(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)?,
        ))
    }

    /// Moves the messages of the dead-letter queue back to the main queue,
    /// calling `progress` as it goes; messages that cannot be processed (see
    /// [`ReplayProgress::skipped`]) stay behind. Uses the server's native
    /// move task (`StartMessageMoveTask`, polled with `ListMessageMoveTasks`)
    /// where the server has one and nothing needs skipping, otherwise
    /// receive -> send -> delete, where a message is deleted from the
    /// dead-letter queue only after the main queue acknowledged its copy (a
    /// message whose send fails stays behind).
    ///
    /// # Errors
    /// [`QueueError`] when the queues cannot be read, a delete fails or the
    /// native task fails; what was moved until then stays moved.
    pub async fn replay_dead_letters(
        &self,
        mut progress: impl FnMut(ReplayProgress) + Send,
    ) -> Result<ReplayProgress, QueueError> {
        // A native move cannot leave anything behind: with poison present, copy.
        if self.peek_dead_letters().await?.iter().any(|l| l.poison.is_some()) {
            return self
                .replay_by_copy(&mut progress, ReplayProgress::default())
                .await;
        }
        let dlq_arn = self.queue_arn(&self.config.dead_letter_queue_url).await?;
        let main_arn = self.queue_arn(&self.config.queue_url).await?;
        let started = self
            .client
            .start_message_move_task()
            .source_arn(&dlq_arn)
            .destination_arn(&main_arn)
            .send()
            .await;
        let handle = match started {
            Ok(started) => started.task_handle.unwrap_or_default(),
            Err(e) => {
                // A server without move tasks refuses the call: the copy is always correct.
                tracing::info!(
                    error = %queue_error(e),
                    "no native message move here; replaying by receive, send, delete"
                );
                return self
                    .replay_by_copy(&mut progress, ReplayProgress::default())
                    .await;
            }
        };
        let moved = self.follow_move_task(&dlq_arn, &handle, &mut progress).await?;
        if self.stats().await?.dead_letter_messages == 0 {
            return Ok(moved);
        }
        // The task stalled (or ended with messages left): copy the rest.
        self.replay_by_copy(&mut progress, moved).await
    }

    async fn queue_arn(&self, queue_url: &str) -> Result<String, QueueError> {
        self.client
            .get_queue_attributes()
            .queue_url(queue_url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(queue_error)?
            .attributes
            .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
            .ok_or_else(|| QueueError::Unknown(format!("queue {queue_url} has no ARN")))
    }

    /// Follows a native move task until it completes, fails, or stalls
    /// (no message moved for `move_task_stall`, when it is cancelled).
    /// Returns what it moved.
    async fn follow_move_task(
        &self,
        dlq_arn: &str,
        handle: &str,
        progress: &mut (impl FnMut(ReplayProgress) + Send),
    ) -> Result<ReplayProgress, QueueError> {
        let mut last_moved = 0;
        let mut last_change = tokio::time::Instant::now();
        loop {
            let tasks = self
                .client
                .list_message_move_tasks()
                .source_arn(dlq_arn)
                .max_results(10)
                .send()
                .await
                .map_err(queue_error)?;
            let task = tasks
                .results()
                .iter()
                .find(|t| handle.is_empty() || t.task_handle().is_none_or(|h| h == handle))
                .ok_or_else(|| QueueError::Unknown(format!("move task {handle} not listed")))?;
            let done = ReplayProgress {
                moved: u64::try_from(task.approximate_number_of_messages_moved()).unwrap_or(0),
                ..ReplayProgress::default()
            };
            if done.moved != last_moved {
                last_moved = done.moved;
                last_change = tokio::time::Instant::now();
                progress(done);
            }
            match task.status().unwrap_or("") {
                "COMPLETED" => {
                    progress(done);
                    return Ok(done);
                }
                "FAILED" | "CANCELLED" => {
                    tracing::warn!(
                        status = task.status().unwrap_or(""),
                        reason = task.failure_reason().unwrap_or("no reason given"),
                        "native move task ended early"
                    );
                    return Ok(done);
                }
                _ if last_change.elapsed() >= self.config.move_task_stall => {
                    tracing::warn!(
                        moved = done.moved,
                        stall_s = self.config.move_task_stall.as_secs(),
                        "native move task makes no progress; cancelling it"
                    );
                    if !handle.is_empty()
                        && let Err(e) = self
                            .client
                            .cancel_message_move_task()
                            .task_handle(handle)
                            .send()
                            .await
                    {
                        tracing::warn!(error = %queue_error(e), "could not cancel the move task");
                    }
                    return Ok(done);
                }
                _ => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
    }

    async fn replay_by_copy(
        &self,
        progress: &mut (impl FnMut(ReplayProgress) + Send),
        already: ReplayProgress,
    ) -> Result<ReplayProgress, QueueError> {
        let dlq = self.config.dead_letter_queue_url.clone();
        let mut done = already;
        // Received poison stays hidden for the rest of the run, and is made visible again at its end.
        let mut skipped_handles = Vec::new();
        let result = loop {
            let batch = match self
                .receive_from(&dlq, MAX_BATCH_ENTRIES, Duration::ZERO, Some(60))
                .await
            {
                Ok(batch) => batch,
                Err(e) => break Err(e),
            };
            if batch.is_empty() {
                break Ok(done);
            }
            let (batch, poison): (Vec<&Message>, Vec<&Message>) = batch.iter().partition(|m| {
                decode_delivery(m).is_ok_and(|d| matches!(d.content, DeliveryContent::Votes(_)))
            });
            for m in poison {
                done.skipped += 1;
                skipped_handles.push(m.receipt_handle().unwrap_or_default().to_owned());
            }
            if batch.is_empty() {
                progress(done);
                continue;
            }
            let outgoing: Vec<OutgoingMessage> = batch.iter().map(|m| OutgoingMessage::copy_of(m)).collect();
            let sent = self.send_messages(&self.config.queue_url, &outgoing).await;
            let mut handles = Vec::new();
            for (m, r) in batch.iter().zip(&sent) {
                match r {
                    Ok(()) => handles.push(m.receipt_handle().unwrap_or_default().to_owned()),
                    Err(e) => {
                        done.failed += 1;
                        tracing::warn!(message_id = m.message_id().unwrap_or(""), error = %e, "replay: send failed");
                    }
                }
            }
            let failed_deletes = match self.delete_from(&dlq, &handles).await {
                Ok(failed) => failed,
                Err(e) => break Err(e),
            };
            // A copy whose original could not be deleted is delivered twice,
            // which idempotent processing makes harmless.
            done.moved += (handles.len() - failed_deletes.len()) as u64;
            progress(done);
        };
        let restored = self.set_visibility(&dlq, &skipped_handles, 0).await;
        let done = result?;
        restored?;
        Ok(done)
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

    /// The same message again (dead-letter replay), attributes kept.
    fn copy_of(m: &Message) -> Self {
        let attr = |name: &str| {
            m.message_attributes()
                .and_then(|a| a.get(name))
                .and_then(|v| v.string_value())
                .map(str::to_owned)
        };
        Self {
            body: m.body().unwrap_or_default().to_owned(),
            correlation_id: attr("correlationId").unwrap_or_else(|| "replayed".to_owned()),
            schema_version: attr("schemaVersion").unwrap_or_else(|| SCHEMA_VERSION.to_string()),
            votes: attr("votes").and_then(|v| v.parse().ok()).unwrap_or(0),
        }
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

impl QueueInspector for SqsQueue {
    async fn stats(&self) -> Result<QueueStats, QueueError> {
        let (visible, in_flight) = self.depth(&self.config.queue_url).await?;
        let (dl_visible, dl_in_flight) = self.depth(&self.config.dead_letter_queue_url).await?;
        Ok(QueueStats {
            visible,
            in_flight,
            // SQS publishes the age of the oldest message only as a CloudWatch metric.
            oldest_age: None,
            dead_letter_messages: dl_visible + dl_in_flight,
        })
    }

    async fn peek_dead_letters(&self) -> Result<Vec<DeadLetter>, QueueError> {
        // Look without consuming: receive with a short visibility timeout
        // until nothing more comes, then make everything visible again.
        let dlq = self.config.dead_letter_queue_url.clone();
        let mut seen: HashMap<String, ()> = HashMap::new();
        let mut handles = Vec::new();
        let mut letters = Vec::new();
        let result = async {
            loop {
                let batch = self
                    .receive_from(
                        &dlq,
                        MAX_BATCH_ENTRIES,
                        Duration::ZERO,
                        Some(PEEK_VISIBILITY_SECS),
                    )
                    .await?;
                if batch.is_empty() {
                    return Ok::<(), QueueError>(());
                }
                for m in &batch {
                    handles.push(m.receipt_handle().unwrap_or_default().to_owned());
                    if seen
                        .insert(m.message_id().unwrap_or_default().to_owned(), ())
                        .is_some()
                    {
                        continue;
                    }
                    letters.push(dead_letter(m)?);
                }
            }
        }
        .await;
        let restored = self.set_visibility(&dlq, &handles, 0).await;
        result?;
        restored?;
        Ok(letters)
    }
}

/// A dead-lettered message as operators see it, decoded as far as it goes.
fn dead_letter(m: &Message) -> Result<DeadLetter, QueueError> {
    let delivery = decode_delivery(m)?;
    let (votes_per_election, poison) = match delivery.content {
        DeliveryContent::Votes(votes) => {
            let mut per: BTreeMap<ElectionId, u64> = BTreeMap::new();
            for v in &votes {
                *per.entry(v.vote.election_id).or_default() += 1;
            }
            (per.into_iter().collect(), None)
        }
        DeliveryContent::Poison(why) => (Vec::new(), Some(why)),
    };
    Ok(DeadLetter {
        message_id: delivery.message_id,
        receive_count: delivery.receive_count,
        sent_at: delivery.sent_at,
        votes_per_election,
        poison,
        head: DeadLetter::head_of(m.body().unwrap_or_default()),
    })
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
        for attempt in 0..20 {
            assert!(backoff(&config, attempt) <= config.max_backoff);
        }
    }
}
