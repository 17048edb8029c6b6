//! Group commit for the per-vote commands: claims and confirms asked for at
//! about the same time go to Redis as one script call instead of one call
//! each (crate docs, "Batching").
//!
//! Callers hand an item to a bounded channel and wait for its answer. One
//! task takes an in-flight permit, then drains whatever is queued (up to
//! `max_batch`) and runs it; it never waits for a batch to fill. While all
//! permits are taken, new items queue up, so the batches grow with the load
//! and a lone vote still goes out at once. Items are split into groups (one
//! per Redis Cluster hash slot when clustered, one in all otherwise), and
//! each group is one call; a failed call fails only the items of its group.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinSet;

/// How big a batch may be and how many run at once.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BatchLimits {
    /// Items waiting for a call before callers wait to hand theirs over.
    pub(crate) queue: usize,
    /// Most items in one drained batch.
    pub(crate) max_batch: usize,
    /// Batches running at once.
    pub(crate) in_flight: usize,
}

/// Where an item's answer goes.
type Reply<R, E> = oneshot::Sender<Result<R, E>>;

/// One group's items and, in the same order, where their answers go.
type Group<T, R, E> = (Vec<T>, Vec<Reply<R, E>>);

struct Job<T, R, E> {
    item: T,
    reply: Reply<R, E>,
}

/// The handle callers use; cheap to clone. The task ends when every handle
/// is dropped, after answering what it took.
pub(crate) struct Batcher<T, R, E> {
    tx: mpsc::Sender<Job<T, R, E>>,
}

impl<T, R, E> Clone for Batcher<T, R, E> {
    fn clone(&self) -> Self {
        Self { tx: self.tx.clone() }
    }
}

/// Why an item got no answer from its call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BatchError<E> {
    /// The call failed; every item of its group gets the error.
    Call(E),
    /// The batching task is gone (the runtime is shutting down).
    Stopped,
}

impl<T, R, E> Batcher<T, R, E>
where
    T: Send + 'static,
    R: Send + 'static,
    E: Clone + Send + 'static,
{
    /// Starts the task on the current runtime. `group` names an item's group;
    /// `run` answers a group's items in order, one answer each.
    pub(crate) fn start<K, G, F, Fut>(limits: BatchLimits, group: G, run: F) -> Self
    where
        K: Eq + Hash + Send + 'static,
        G: Fn(&T) -> K + Send + 'static,
        F: Fn(Vec<T>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<R>, E>> + Send + 'static,
    {
        let (tx, rx) = mpsc::channel(limits.queue.max(1));
        tokio::spawn(drain(rx, limits, group, Arc::new(run)));
        Self { tx }
    }

    /// Hands `item` over and waits for its answer.
    pub(crate) async fn call(&self, item: T) -> Result<R, BatchError<E>> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Job { item, reply })
            .await
            .map_err(|_| BatchError::Stopped)?;
        match answer.await {
            Ok(result) => result.map_err(BatchError::Call),
            Err(_) => Err(BatchError::Stopped),
        }
    }
}

async fn drain<T, R, E, K, G, F, Fut>(
    mut rx: mpsc::Receiver<Job<T, R, E>>,
    limits: BatchLimits,
    group: G,
    run: Arc<F>,
) where
    T: Send + 'static,
    R: Send + 'static,
    E: Clone + Send + 'static,
    K: Eq + Hash,
    G: Fn(&T) -> K,
    F: Fn(Vec<T>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Vec<R>, E>> + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(limits.in_flight.max(1)));
    let max_batch = limits.max_batch.max(1);
    let mut jobs = Vec::with_capacity(max_batch);
    loop {
        // The permit first: while every call is busy, items pile up in the
        // channel and the next drain takes them all at once.
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        if rx.recv_many(&mut jobs, max_batch).await == 0 {
            return;
        }
        let mut groups: HashMap<K, Group<T, R, E>> = HashMap::new();
        for job in jobs.drain(..) {
            let (items, replies) = groups.entry(group(&job.item)).or_default();
            items.push(job.item);
            replies.push(job.reply);
        }
        let groups: Vec<_> = groups.into_values().collect();
        let run = run.clone();
        tokio::spawn(async move {
            let mut calls = JoinSet::new();
            for (items, replies) in groups {
                let run = run.clone();
                calls.spawn(async move { answer(run(items).await, replies) });
            }
            while calls.join_next().await.is_some() {}
            drop(permit);
        });
    }
}

/// Sends each item its answer; a call that answered the wrong number of
/// items answers none of them (they see [`BatchError::Stopped`]).
fn answer<R, E: Clone>(result: Result<Vec<R>, E>, replies: Vec<Reply<R, E>>) {
    match result {
        Ok(answers) if answers.len() == replies.len() => {
            for (reply, answer) in replies.into_iter().zip(answers) {
                reply.send(Ok(answer)).ok();
            }
        }
        Ok(answers) => {
            tracing::error!(
                expected = replies.len(),
                got = answers.len(),
                "a batched Redis script answered the wrong number of items"
            );
        }
        Err(e) => {
            for reply in replies {
                reply.send(Err(e.clone())).ok();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use super::*;

    const LIMITS: BatchLimits = BatchLimits {
        queue: 1000,
        max_batch: 100,
        in_flight: 1,
    };

    /// A batcher that doubles numbers, fails group 7, records each call's
    /// items and holds each call for 20 ms.
    fn doubler(calls: Arc<Mutex<Vec<Vec<u32>>>>) -> Batcher<u32, u32, String> {
        Batcher::start(
            LIMITS,
            |n: &u32| n % 10,
            move |items: Vec<u32>| {
                let calls = calls.clone();
                async move {
                    calls.lock().unwrap().push(items.clone());
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    if items[0] % 10 == 7 {
                        return Err(format!("group of {}", items[0]));
                    }
                    Ok(items.into_iter().map(|n| n * 2).collect())
                }
            },
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn items_queued_behind_a_busy_call_go_out_together_by_group_each_with_its_own_answer() {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let batcher = doubler(calls.clone());
        // The first call goes out alone and keeps the only permit busy.
        let first = tokio::spawn({
            let b = batcher.clone();
            async move { b.call(1).await }
        });
        tokio::time::sleep(Duration::from_millis(5)).await;
        let mut rest = Vec::new();
        for n in [11, 21, 2, 12, 17, 27] {
            let b = batcher.clone();
            rest.push(tokio::spawn(async move { (n, b.call(n).await) }));
        }
        assert_eq!(first.await.unwrap(), Ok(2));
        for task in rest {
            let (n, answer) = task.await.unwrap();
            if n % 10 == 7 {
                assert!(
                    matches!(answer, Err(BatchError::Call(ref e)) if e.starts_with("group of")),
                    "{n}: {answer:?}"
                );
            } else {
                assert_eq!(answer, Ok(n * 2), "{n}");
            }
        }
        let mut seen: Vec<Vec<u32>> = calls.lock().unwrap().clone();
        assert_eq!(seen.remove(0), vec![1], "the first item waits for nothing");
        // The six callers run on two worker threads, so the order in which
        // they reach the queue (and so the order inside a group) is theirs.
        for items in &mut seen {
            items.sort_unstable();
        }
        seen.sort();
        assert_eq!(seen, vec![vec![2, 12], vec![11, 21], vec![17, 27]]);
    }

    #[tokio::test]
    async fn a_call_answering_the_wrong_number_of_items_answers_none() {
        let batcher: Batcher<u32, u32, String> =
            Batcher::start(LIMITS, |_: &u32| (), |_items: Vec<u32>| async { Ok(Vec::new()) });
        assert_eq!(batcher.call(3).await, Err(BatchError::Stopped));
    }
}
