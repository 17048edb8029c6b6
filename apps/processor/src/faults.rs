//! Fault injection for the fault suite (`scripts/faults.sh`), compiled in
//! only with the `failpoints` feature (see `livevote_hosting::faults`).
//! Points of the processor:
//! - `processor-after-receive`: a batch is received, nothing committed;
//! - `processor-after-commit`: committed, no message deleted;
//! - `processor-redeliver=return(N)`: instead of deleting a committed message,
//!   makes it visible again until it has been delivered `1 + hash(id) mod N`
//!   times, so every message arrives between 1 and N times.

/// The vote store as a fault build may weaken it: with
/// `LIVEVOTE_FAULT_SERVER_COMMIT_MODE=1` commits follow the server's
/// `synchronous_commit` (the negative control); every other build keeps it forced on.
pub(crate) fn store(store: livevote_postgres::PgVoteStore) -> livevote_postgres::PgVoteStore {
    #[cfg(feature = "failpoints")]
    if std::env::var("LIVEVOTE_FAULT_SERVER_COMMIT_MODE").is_ok_and(|v| v == "1") {
        tracing::warn!("fault build: commits follow the server's synchronous_commit (not forced on)");
        return store.with_server_commit_mode();
    }
    store
}

pub(crate) use livevote_hosting::crash_point;

/// With `processor-redeliver` armed: splits committed messages into those to
/// delete now and those to hand back for another delivery, from each
/// message's id and how often it has been received.
#[cfg(feature = "failpoints")]
pub(crate) fn redeliveries(
    messages: Vec<(livevote_ports::DeliveryTag, String, u32)>,
) -> (Vec<livevote_ports::DeliveryTag>, Vec<livevote_ports::DeliveryTag>) {
    let Some(most) = fail::eval("processor-redeliver", |arg| {
        arg.and_then(|a| a.parse::<u64>().ok()).unwrap_or(20).max(1)
    }) else {
        return (messages.into_iter().map(|(tag, _, _)| tag).collect(), Vec::new());
    };
    let (mut delete, mut again) = (Vec::new(), Vec::new());
    for (tag, message_id, received) in messages {
        // FNV-1a: a stable spread of delivery counts over the message ids.
        let hash = message_id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
        let deliveries = 1 + hash % most;
        if u64::from(received) < deliveries {
            again.push(tag);
        } else {
            delete.push(tag);
        }
    }
    (delete, again)
}
