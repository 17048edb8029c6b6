//! Inspecting the queues (approximate depths, every dead letter decoded as
//! far as it goes) and moving dead letters back to the main queue: operators'
//! and auditors' work, off the vote path.

use super::*;

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

impl SqsQueue {
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

impl OutgoingMessage {
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
