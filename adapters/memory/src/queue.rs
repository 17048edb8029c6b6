//! An in-memory stand-in for an SQS standard queue with a dead-letter queue.
//!
//! Modelled on the behaviour the processor relies on:
//! - publishing packs votes into messages of at most `votes_per_message`;
//!   each message succeeds or fails on its own, and the per-vote outcome says
//!   which;
//! - a received message is hidden for the visibility timeout, then comes back
//!   with its receive count raised;
//! - each receive hands out a new delivery tag; deleting with a stale tag
//!   (from before a redelivery) deletes nothing, as SQS does not promise to;
//! - a message received `max_receive_count` times without being deleted moves
//!   to the dead-letter queue on the next receive attempt;
//! - the whole queue can be switched off, and individual messages can be made
//!   to fail, to exercise the failure paths.
//!
//! Visibility follows the injected clock; long polling waits in real time.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration as StdDuration;

use chrono::Duration;
use livevote_domain::{ElectionId, Timestamp, VoteRecord};
use livevote_ports::{
    AckReport, Clock, DeadLetter, Delivery, DeliveryContent, DeliveryTag, PoisonReason, QueueError,
    QueueInspector, QueueStats, VoteQueue, VoteSource,
};
use tokio::sync::Notify;

/// Queue settings.
#[derive(Debug, Clone, Copy)]
pub struct QueueConfig {
    /// Most votes packed into one message.
    pub votes_per_message: usize,
    /// How long a received message stays hidden.
    pub visibility_timeout: Duration,
    /// Deliveries before a message moves to the dead-letter queue.
    pub max_receive_count: u32,
    /// Most messages the main queue holds; publishing beyond answers `Throttled`.
    pub capacity: usize,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            votes_per_message: 100,
            visibility_timeout: Duration::seconds(30),
            max_receive_count: 5,
            capacity: 1_000_000,
        }
    }
}

#[derive(Debug, Clone)]
struct Message {
    content: DeliveryContent,
    sent_at: Timestamp,
    receive_count: u32,
    visible_at: Timestamp,
    receipt: Option<u64>,
}

#[derive(Debug, Default)]
struct State {
    next_id: u64,
    next_receipt: u64,
    main: BTreeMap<u64, Message>,
    dead: BTreeMap<u64, Message>,
    fail_next_messages: usize,
    published_messages: u64,
}

/// The queue and its dead-letter queue. Clones share the same queues.
#[derive(Clone)]
pub struct MemoryQueue {
    state: Arc<Mutex<State>>,
    available: Arc<AtomicBool>,
    /// While true, publish calls hang (an endpoint that accepted the connection and went quiet).
    hung: Arc<tokio::sync::watch::Sender<bool>>,
    arrived: Arc<Notify>,
    clock: Arc<dyn Clock>,
    config: QueueConfig,
}

impl std::fmt::Debug for MemoryQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryQueue")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn tag(id: u64, receipt: u64) -> DeliveryTag {
    DeliveryTag(format!("{id}:{receipt}"))
}

fn parse_tag(tag: &DeliveryTag) -> Option<(u64, u64)> {
    let (id, receipt) = tag.0.split_once(':')?;
    Some((id.parse().ok()?, receipt.parse().ok()?))
}

impl MemoryQueue {
    pub fn new(clock: impl Clock, config: QueueConfig) -> Self {
        Self {
            state: Arc::default(),
            available: Arc::new(AtomicBool::new(true)),
            hung: Arc::new(tokio::sync::watch::channel(false).0),
            arrived: Arc::new(Notify::new()),
            clock: Arc::new(clock),
            config,
        }
    }

    /// Simulates an endpoint that hangs (`true`): publish calls wait, taking
    /// nothing, until it answers again (`false`); then they complete.
    pub fn set_hung(&self, hung: bool) {
        self.hung.send_replace(hung);
    }

    /// Simulates the queue endpoint going down (`false`) and coming back (`true`).
    pub fn set_available(&self, available: bool) {
        self.available.store(available, Ordering::SeqCst);
    }

    /// Makes the next `n` published messages fail on their own while the rest
    /// of their batch succeeds (a partially failed `SendMessageBatch`).
    pub fn fail_next_messages(&self, n: usize) {
        self.lock().fail_next_messages = n;
    }

    /// Puts a message with arbitrary content on the queue, as a foreign or
    /// broken producer could.
    pub fn inject(&self, content: DeliveryContent) {
        let now = self.clock.now();
        self.push(content, now);
    }

    /// Puts an undecodable message on the queue.
    pub fn inject_poison(&self, why: &str) {
        self.inject(DeliveryContent::Poison(PoisonReason::Undecodable(why.to_owned())));
    }

    /// Messages accepted by `publish` (or `inject`) since creation.
    pub fn published_messages(&self) -> u64 {
        self.lock().published_messages
    }

    /// The contents of the dead-letter queue, oldest first.
    pub fn dead_letters(&self) -> Vec<DeliveryContent> {
        self.lock().dead.values().map(|m| m.content.clone()).collect()
    }

    /// Moves every dead-lettered message back to the main queue with its
    /// receive count reset; returns how many moved.
    pub fn replay_dead_letters(&self) -> usize {
        let now = self.clock.now();
        let mut state = self.lock();
        let dead = std::mem::take(&mut state.dead);
        let moved = dead.len();
        for (id, mut m) in dead {
            m.receive_count = 0;
            m.receipt = None;
            m.visible_at = now;
            state.main.insert(id, m);
        }
        drop(state);
        self.arrived.notify_waiters();
        moved
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("memory queue lock")
    }

    fn up(&self) -> Result<(), QueueError> {
        if self.available.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err(QueueError::Unavailable("memory queue switched off".into()))
        }
    }

    fn push(&self, content: DeliveryContent, now: Timestamp) {
        let mut state = self.lock();
        let id = state.next_id;
        state.next_id += 1;
        state.published_messages += 1;
        state.main.insert(
            id,
            Message {
                content,
                sent_at: now,
                receive_count: 0,
                visible_at: now,
                receipt: None,
            },
        );
        drop(state);
        self.arrived.notify_waiters();
    }

    /// Takes up to `max` visible messages, moving exhausted ones to the DLQ.
    fn take_visible(&self, max: usize) -> Vec<Delivery> {
        let now = self.clock.now();
        let mut state = self.lock();
        let visible: Vec<u64> = state
            .main
            .iter()
            .filter(|(_, m)| m.visible_at <= now)
            .map(|(&id, _)| id)
            .collect();
        let mut out = Vec::new();
        for id in visible {
            if out.len() >= max {
                break;
            }
            let exhausted = state
                .main
                .get(&id)
                .is_some_and(|m| m.receive_count >= self.config.max_receive_count);
            if exhausted {
                let m = state.main.remove(&id).expect("present");
                state.dead.insert(id, m);
                continue;
            }
            let receipt = state.next_receipt;
            state.next_receipt += 1;
            let m = state.main.get_mut(&id).expect("present");
            m.receive_count += 1;
            m.receipt = Some(receipt);
            m.visible_at = now + self.config.visibility_timeout;
            out.push(Delivery {
                tag: tag(id, receipt),
                message_id: format!("mem-{id}"),
                receive_count: m.receive_count,
                sent_at: Some(m.sent_at),
                content: m.content.clone(),
            });
        }
        out
    }
}

impl VoteQueue for MemoryQueue {
    async fn publish(&self, votes: &[VoteRecord]) -> Vec<Result<(), QueueError>> {
        let mut hung = self.hung.subscribe();
        // A sender is always held by `self`, so this only ends once the endpoint answers.
        if hung.wait_for(|h| !*h).await.is_err() {
            return votes
                .iter()
                .map(|_| Err(QueueError::Unknown("queue dropped".into())))
                .collect();
        }
        if let Err(e) = self.up() {
            return votes.iter().map(|_| Err(e.clone())).collect();
        }
        let now = self.clock.now();
        let mut outcomes = Vec::with_capacity(votes.len());
        for chunk in votes.chunks(self.config.votes_per_message.max(1)) {
            let verdict = {
                let mut state = self.lock();
                if state.fail_next_messages > 0 {
                    state.fail_next_messages -= 1;
                    Err(QueueError::Rejected("injected message failure".into()))
                } else if state.main.len() >= self.config.capacity {
                    Err(QueueError::Throttled("memory queue is full".into()))
                } else {
                    Ok(())
                }
            };
            if verdict.is_ok() {
                self.push(DeliveryContent::Votes(chunk.to_vec()), now);
            }
            outcomes.extend(chunk.iter().map(|_| verdict.clone()));
        }
        outcomes
    }
}

impl VoteSource for MemoryQueue {
    async fn receive(&self, max_messages: usize, wait: StdDuration) -> Result<Vec<Delivery>, QueueError> {
        self.up()?;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Register interest before looking, so a publish in between is not missed.
            let arrived = self.arrived.notified();
            let got = self.take_visible(max_messages.max(1));
            if !got.is_empty() {
                return Ok(got);
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(Vec::new());
            }
            // Messages also reappear when their visibility lapses, which no
            // one announces: look again at least every 20 ms.
            let nap = (deadline - now).min(StdDuration::from_millis(20));
            let _ = tokio::time::timeout(nap, arrived).await;
            self.up()?;
        }
    }

    async fn ack(&self, tags: &[DeliveryTag]) -> Result<AckReport, QueueError> {
        self.up()?;
        let mut state = self.lock();
        let mut report = AckReport::default();
        for t in tags {
            let current = parse_tag(t)
                .filter(|(id, receipt)| state.main.get(id).is_some_and(|m| m.receipt == Some(*receipt)));
            match current {
                Some((id, _)) => {
                    state.main.remove(&id);
                }
                None => report.failed.push(t.clone()),
            }
        }
        Ok(report)
    }

    async fn extend_visibility(&self, tags: &[DeliveryTag], by: StdDuration) -> Result<(), QueueError> {
        self.up()?;
        let until = self.clock.now() + Duration::from_std(by).unwrap_or(Duration::MAX);
        let mut state = self.lock();
        for t in tags {
            if let Some((id, receipt)) = parse_tag(t)
                && let Some(m) = state.main.get_mut(&id)
                && m.receipt == Some(receipt)
            {
                m.visible_at = until;
            }
        }
        Ok(())
    }
}

impl QueueInspector for MemoryQueue {
    async fn stats(&self) -> Result<QueueStats, QueueError> {
        self.up()?;
        let now = self.clock.now();
        let state = self.lock();
        let visible = state.main.values().filter(|m| m.visible_at <= now).count() as u64;
        let oldest = state.main.values().map(|m| m.sent_at).min();
        Ok(QueueStats {
            visible,
            in_flight: state.main.len() as u64 - visible,
            oldest_age: oldest.map(|t| (now - t).to_std().unwrap_or_default()),
            dead_letter_messages: state.dead.len() as u64,
        })
    }

    async fn peek_dead_letters(&self) -> Result<Vec<DeadLetter>, QueueError> {
        self.up()?;
        let state = self.lock();
        Ok(state
            .dead
            .iter()
            .map(|(id, m)| {
                let (votes_per_election, poison, head) = match &m.content {
                    DeliveryContent::Votes(votes) => {
                        let mut per: BTreeMap<ElectionId, u64> = BTreeMap::new();
                        for v in votes {
                            *per.entry(v.vote.election_id).or_default() += 1;
                        }
                        let head = format!("{} votes", votes.len());
                        (per.into_iter().collect(), None, head)
                    }
                    DeliveryContent::Poison(why) => (Vec::new(), Some(why.clone()), why.to_string()),
                };
                DeadLetter {
                    message_id: id.to_string(),
                    receive_count: m.receive_count,
                    sent_at: Some(m.sent_at),
                    votes_per_election,
                    poison,
                    head: DeadLetter::head_of(&head),
                }
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use livevote_domain::{Ballot, CandidateId, CorrelationId, VoteId, VoterId};
    use livevote_testkit::ManualClock;

    fn votes(n: usize) -> Vec<VoteRecord> {
        let e = ElectionId::generate();
        (0..n)
            .map(|i| VoteRecord {
                vote: Ballot {
                    vote_id: VoteId::generate(),
                    election_id: e,
                    candidate_id: CandidateId::generate(),
                    voter_id: VoterId::parse(format!("v{i}")).unwrap(),
                    accepted_at: Utc::now(),
                    slot: livevote_domain::VoteSlot::FIRST,
                },
                correlation_id: CorrelationId::generate(),
            })
            .collect()
    }

    fn queue(clock: &ManualClock) -> MemoryQueue {
        MemoryQueue::new(
            clock.clone(),
            QueueConfig {
                votes_per_message: 10,
                ..QueueConfig::default()
            },
        )
    }

    const NO_WAIT: StdDuration = StdDuration::ZERO;

    #[tokio::test]
    async fn packs_votes_and_maps_failed_messages_to_their_votes() {
        let clock = ManualClock::new(Utc::now());
        let q = queue(&clock);
        q.fail_next_messages(1);
        let batch = votes(25);
        let outcomes = q.publish(&batch).await;
        assert_eq!(outcomes.len(), 25);
        assert!(
            outcomes[..10].iter().all(Result::is_err),
            "the first message failed: its 10 votes"
        );
        assert!(outcomes[10..].iter().all(Result::is_ok));
        let got = q.receive(10, NO_WAIT).await.unwrap();
        let sizes: Vec<usize> = got
            .iter()
            .map(|d| match &d.content {
                DeliveryContent::Votes(v) => v.len(),
                DeliveryContent::Poison(_) => 0,
            })
            .collect();
        assert_eq!(sizes, vec![10, 5]);
    }

    #[tokio::test]
    async fn unacked_messages_come_back_then_dead_letter() {
        let clock = ManualClock::new(Utc::now());
        let q = queue(&clock);
        q.publish(&votes(3)).await;
        for round in 1..=5 {
            let got = q.receive(10, NO_WAIT).await.unwrap();
            assert_eq!(got.len(), 1);
            assert_eq!(got[0].receive_count, round);
            assert!(
                q.receive(10, NO_WAIT).await.unwrap().is_empty(),
                "hidden while in flight"
            );
            clock.advance(Duration::seconds(30));
        }
        assert!(
            q.receive(10, NO_WAIT).await.unwrap().is_empty(),
            "sixth attempt moves it to the DLQ"
        );
        let stats = q.stats().await.unwrap();
        assert_eq!(
            (stats.visible, stats.in_flight, stats.dead_letter_messages),
            (0, 0, 1)
        );
        assert_eq!(q.dead_letter_summary().await.unwrap().votes_per_election[0].1, 3);
        assert_eq!(q.replay_dead_letters(), 1);
        let got = q.receive(10, NO_WAIT).await.unwrap();
        assert_eq!(got[0].receive_count, 1);
        assert!(q.ack(&[got[0].tag.clone()]).await.unwrap().failed.is_empty());
        assert_eq!(q.stats().await.unwrap().pending_messages(), 0);
    }

    #[tokio::test]
    async fn stale_tags_delete_nothing_and_extension_keeps_a_message_hidden() {
        let clock = ManualClock::new(Utc::now());
        let q = queue(&clock);
        q.publish(&votes(1)).await;
        let first = q.receive(1, NO_WAIT).await.unwrap().remove(0);
        q.extend_visibility(std::slice::from_ref(&first.tag), StdDuration::from_secs(120))
            .await
            .unwrap();
        clock.advance(Duration::seconds(60));
        assert!(
            q.receive(1, NO_WAIT).await.unwrap().is_empty(),
            "extended past the timeout"
        );
        clock.advance(Duration::seconds(61));
        let second = q.receive(1, NO_WAIT).await.unwrap().remove(0);
        assert_eq!(second.message_id, first.message_id);
        let report = q.ack(std::slice::from_ref(&first.tag)).await.unwrap();
        assert_eq!(report.failed, vec![first.tag]);
        assert!(q.ack(&[second.tag]).await.unwrap().failed.is_empty());
    }

    #[tokio::test]
    async fn long_poll_wakes_on_publish_and_down_means_unavailable() {
        let q = MemoryQueue::new(livevote_hosting::SystemClock, QueueConfig::default());
        let waiter = {
            let q = q.clone();
            tokio::spawn(async move { q.receive(10, StdDuration::from_secs(5)).await })
        };
        tokio::time::sleep(StdDuration::from_millis(50)).await;
        let started = std::time::Instant::now();
        q.publish(&votes(1)).await;
        let got = waiter.await.unwrap().unwrap();
        assert_eq!(got.len(), 1);
        assert!(started.elapsed() < StdDuration::from_secs(4));
        q.set_available(false);
        assert!(
            q.publish(&votes(2))
                .await
                .iter()
                .all(|r| matches!(r, Err(QueueError::Unavailable(_))))
        );
        assert!(matches!(
            q.receive(1, NO_WAIT).await,
            Err(QueueError::Unavailable(_))
        ));
    }
}
