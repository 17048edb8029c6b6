//! Election change feed over a bounded in-process broadcast channel.

use livevote_domain::ElectionId;
use livevote_ports::{
    CatalogError, ChangeKind, ElectionAnnouncer, ElectionChange, ElectionChangeFeed, ElectionChanges,
};
use tokio::sync::broadcast;

/// Announces election changes to every subscription in this process. A
/// subscriber that falls more than the buffer behind gets
/// [`ElectionChange::Resync`] instead of the changes it missed.
#[derive(Debug, Clone)]
pub struct MemoryBus {
    tx: broadcast::Sender<(ElectionId, ChangeKind)>,
}

impl MemoryBus {
    /// A bus keeping at most `buffer` changes per lagging subscriber.
    pub fn new(buffer: usize) -> Self {
        let (tx, _) = broadcast::channel(buffer.max(1));
        Self { tx }
    }
}

impl Default for MemoryBus {
    fn default() -> Self {
        Self::new(1024)
    }
}

/// One subscription to a [`MemoryBus`].
#[derive(Debug)]
pub struct MemorySubscription {
    rx: broadcast::Receiver<(ElectionId, ChangeKind)>,
}

impl ElectionChanges for MemorySubscription {
    async fn next(&mut self) -> Option<ElectionChange> {
        match self.rx.recv().await {
            Ok((election_id, kind)) => Some(ElectionChange::Changed { election_id, kind }),
            Err(broadcast::error::RecvError::Lagged(_)) => Some(ElectionChange::Resync),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }
}

impl ElectionChangeFeed for MemoryBus {
    type Changes = MemorySubscription;

    async fn subscribe(&self) -> Result<MemorySubscription, CatalogError> {
        Ok(MemorySubscription {
            rx: self.tx.subscribe(),
        })
    }
}

impl ElectionAnnouncer for MemoryBus {
    async fn announce(&self, election_id: ElectionId, kind: ChangeKind) -> Result<(), CatalogError> {
        // No subscribers is not an error: nobody has anything cached.
        let _ = self.tx.send((election_id, kind));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_subscriber_sees_every_change_and_laggards_resync() {
        let bus = MemoryBus::new(2);
        let mut a = bus.subscribe().await.unwrap();
        let mut b = bus.subscribe().await.unwrap();
        let id = ElectionId::generate();
        bus.announce(id, ChangeKind::Closed).await.unwrap();
        let closed = ElectionChange::Changed {
            election_id: id,
            kind: ChangeKind::Closed,
        };
        assert_eq!(a.next().await, Some(closed));
        assert_eq!(b.next().await, Some(closed));
        for _ in 0..3 {
            bus.announce(id, ChangeKind::Edited).await.unwrap();
        }
        assert_eq!(
            a.next().await,
            Some(ElectionChange::Resync),
            "a gap is never silent"
        );
    }
}
