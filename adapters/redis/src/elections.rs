//! The shared election cache (a hash per election with a TTL, in front of the
//! catalog of record) and the change feed on a pub/sub channel.

use std::collections::HashMap;

use anyhow::{Context, anyhow};
use fred::clients::SubscriberClient;
use fred::interfaces::EventInterface;
use fred::prelude::{ClientLike, HashesInterface, KeysInterface, PubsubInterface};
use fred::types::Message;
use fred::types::config::Server;
use fred::types::scripts::Script;
use livevote_domain::election::ElectionParts;
use livevote_domain::{
    Candidate, CandidateId, CandidateName, Description, Election, ElectionId, ElectionStatus, Party,
    ResultsVisibility, Title, VotePolicy, VotingWindow,
};
use livevote_ports::{
    CatalogError, ChangeKind, ElectionAnnouncer, ElectionCatalog, ElectionChange, ElectionChangeFeed,
    ElectionChanges, ElectionCopies,
};
use tokio::sync::broadcast::Receiver;
use tokio::sync::broadcast::error::RecvError;

use crate::{RedisStore, builder, format_time, is_unavailable, parse_time};

/// Writes an election into the cache unless the cache already holds a newer
/// version (a slow reader must not overwrite what an announcer just wrote).
/// KEYS: cache key. ARGV: TTL ms, version, field, value, field, value, ...
pub const CACHE_LUA: &str = r"
local cached = redis.call('HGET', KEYS[1], 'version')
if cached and tonumber(cached) > tonumber(ARGV[2]) then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
";

fn catalog_error(e: fred::error::Error) -> CatalogError {
    if is_unavailable(&e) {
        CatalogError::Unavailable(e.into())
    } else {
        CatalogError::Unknown(e.into())
    }
}

/// An [`ElectionCatalog`] that answers from a Redis hash per election and
/// fills it from `inner` (PostgreSQL) on a miss, so a fleet of ingestion
/// instances does not stampede the database when a show starts.
///
/// It is also the [`ElectionAnnouncer`]: announcing a change re-reads the
/// election from `inner`, writes it to the cache (version-guarded, see
/// [`CACHE_LUA`]) and then publishes `<kind> <id>` on the changes channel, so
/// a subscriber that refreshes on the message already finds the new version.
#[derive(Debug, Clone)]
pub struct RedisElectionCache<C> {
    redis: RedisStore,
    inner: C,
    script: Script,
}

impl<C: ElectionCatalog> RedisElectionCache<C> {
    pub fn new(redis: RedisStore, inner: C) -> Self {
        Self {
            redis,
            inner,
            script: Script::from_lua(CACHE_LUA),
        }
    }

    async fn cached(&self, id: ElectionId) -> Result<Option<Election>, CatalogError> {
        let fields: HashMap<String, String> = self
            .redis
            .pool
            .hgetall(self.redis.keys.election(id))
            .await
            .map_err(catalog_error)?;
        if fields.is_empty() {
            return Ok(None);
        }
        match decode_election(&fields) {
            Ok(e) if e.id() == id => Ok(Some(e)),
            Ok(e) => Err(CatalogError::Unknown(anyhow!(
                "cache key of election {id} holds election {}",
                e.id()
            ))),
            // A corrupt entry is dropped and read again from the catalog of record.
            Err(error) => {
                tracing::warn!(election_id = %id, error = %error, "corrupt cached election, reading the catalog");
                Ok(None)
            }
        }
    }

    async fn store(&self, election: &Election) -> Result<(), CatalogError> {
        let ttl_ms = i64::try_from(self.redis.config.election_cache_ttl.as_millis())
            .unwrap_or(i64::MAX)
            .max(1);
        let mut args = vec![ttl_ms.to_string(), election.version().to_string()];
        for (field, value) in encode_election(election) {
            args.push(field);
            args.push(value);
        }
        let _: i64 = self
            .script
            .evalsha_with_reload(
                self.redis.pool.next(),
                self.redis.keys.election(election.id()),
                args,
            )
            .await
            .map_err(catalog_error)?;
        Ok(())
    }
}

impl<C: ElectionCatalog> ElectionCatalog for RedisElectionCache<C> {
    async fn get(&self, id: ElectionId) -> Result<Option<Election>, CatalogError> {
        match self.cached(id).await {
            Ok(Some(e)) => return Ok(Some(e)),
            Ok(None) => {}
            // Redis down: the catalog of record still answers, only slower.
            Err(error) => tracing::warn!(election_id = %id, error = %error, "election cache unavailable"),
        }
        let election = self.inner.get(id).await?;
        if let Some(e) = &election
            && let Err(error) = self.store(e).await
        {
            tracing::warn!(election_id = %id, error = %error, "could not fill the election cache");
        }
        Ok(election)
    }
}

impl<C: ElectionCatalog> ElectionAnnouncer for RedisElectionCache<C> {
    async fn announce(&self, election_id: ElectionId, kind: ChangeKind) -> Result<(), CatalogError> {
        match self.inner.get(election_id).await? {
            Some(e) => self.store(&e).await?,
            None => {
                let _: i64 = self
                    .redis
                    .pool
                    .del(self.redis.keys.election(election_id))
                    .await
                    .map_err(catalog_error)?;
            }
        }
        let message = format!("{} {election_id}", kind.as_str());
        let _receivers: i64 = self
            .redis
            .pool
            .next()
            .publish(self.redis.keys.changes_channel(), message)
            .await
            .map_err(catalog_error)?;
        Ok(())
    }
}

impl ElectionChangeFeed for RedisStore {
    type Changes = RedisChanges;

    async fn subscribe(&self) -> Result<RedisChanges, CatalogError> {
        let client = builder(&self.fred_config, &self.config)
            .build_subscriber_client()
            .map_err(|e| CatalogError::Unknown(e.into()))?;
        // Subscribe to the event streams before connecting, so no reconnect is missed.
        let messages = client.message_rx();
        let reconnects = client.reconnect_rx();
        client.init().await.map_err(catalog_error)?;
        let channel = self.keys.changes_channel();
        client.subscribe(channel.clone()).await.map_err(catalog_error)?;
        // The initial connection counts as a "reconnect" event; it happened
        // before the subscription, so it is not a gap.
        let mut reconnects = reconnects;
        while reconnects.try_recv().is_ok() {}
        Ok(RedisChanges {
            client,
            messages,
            reconnects,
            channel,
        })
    }
}

/// One subscription to the changes channel, on its own connection.
///
/// After a reconnect it subscribes again and then yields
/// [`ElectionChange::Resync`]: anything published while it was away is
/// covered by the refresh the resync triggers. A subscriber that falls behind
/// the client's buffer also gets a resync.
pub struct RedisChanges {
    client: SubscriberClient,
    messages: Receiver<Message>,
    reconnects: Receiver<Server>,
    channel: String,
}

impl std::fmt::Debug for RedisChanges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisChanges")
            .field("channel", &self.channel)
            .finish_non_exhaustive()
    }
}

impl ElectionChanges for RedisChanges {
    async fn next(&mut self) -> Option<ElectionChange> {
        loop {
            tokio::select! {
                reconnected = self.reconnects.recv() => match reconnected {
                    Ok(_) | Err(RecvError::Lagged(_)) => {
                        if let Err(error) = self.client.resubscribe_all().await {
                            tracing::warn!(error = %error, "resubscribing to election changes");
                        }
                        return Some(ElectionChange::Resync);
                    }
                    Err(RecvError::Closed) => return None,
                },
                message = self.messages.recv() => match message {
                    Ok(m) if *m.channel == *self.channel => {
                        return Some(parse_change(&m).unwrap_or_else(|error| {
                            tracing::warn!(error = %error, "unreadable election change, resyncing");
                            ElectionChange::Resync
                        }));
                    }
                    Ok(_) => continue,
                    Err(RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "election change subscriber lagged, resyncing");
                        return Some(ElectionChange::Resync);
                    }
                    Err(RecvError::Closed) => return None,
                },
            }
        }
    }
}

impl Drop for RedisChanges {
    fn drop(&mut self) {
        let client = self.client.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(e) = client.quit().await {
                    tracing::debug!(error = %e, "closing an election change subscription");
                }
            });
        }
    }
}

fn parse_change(m: &Message) -> anyhow::Result<ElectionChange> {
    let text: String = m.value.clone().convert().context("election change is not text")?;
    let (kind, id) = text
        .split_once(' ')
        .with_context(|| format!("election change {text:?}"))?;
    Ok(ElectionChange::Changed {
        election_id: ElectionId::parse(id).with_context(|| format!("election change {text:?}"))?,
        kind: ChangeKind::parse(kind).with_context(|| format!("election change {text:?}: kind"))?,
    })
}

fn encode_election(e: &Election) -> Vec<(String, String)> {
    let p = e.to_parts();
    let mut fields = vec![
        ("id".to_owned(), p.id.to_string()),
        ("title".to_owned(), p.title.as_str().to_owned()),
        ("description".to_owned(), p.description.as_str().to_owned()),
        ("start".to_owned(), format_time(p.window.start())),
        ("end".to_owned(), format_time(p.window.end())),
        ("status".to_owned(), p.status.as_str().to_owned()),
        ("visibility".to_owned(), p.visibility.as_str().to_owned()),
        ("captcha".to_owned(), u8::from(p.captcha_required).to_string()),
        ("version".to_owned(), p.version.to_string()),
        ("created_at".to_owned(), format_time(p.created_at)),
        ("candidates".to_owned(), p.candidates.len().to_string()),
        ("policy".to_owned(), p.policy.as_str().to_owned()),
    ];
    if let Some(n) = p.policy.max_votes() {
        fields.push(("max_votes".to_owned(), n.to_string()));
    }
    if let Some(n) = p.policy.max_per_candidate() {
        fields.push(("max_per_candidate".to_owned(), n.to_string()));
    }
    for (i, c) in p.candidates.iter().enumerate() {
        fields.push((format!("c{i}.id"), c.id().to_string()));
        fields.push((format!("c{i}.name"), c.name().as_str().to_owned()));
        if let Some(party) = c.party() {
            fields.push((format!("c{i}.party"), party.as_str().to_owned()));
        }
    }
    fields
}

fn decode_election(f: &HashMap<String, String>) -> anyhow::Result<Election> {
    let get = |name: &str| {
        f.get(name)
            .map(String::as_str)
            .with_context(|| format!("no field {name}"))
    };
    let time = |name: &str| parse_time(get(name)?).with_context(|| format!("field {name}"));
    let count: usize = get("candidates")?.parse().context("field candidates")?;
    let mut candidates = Vec::with_capacity(count);
    for i in 0..count {
        let party = match f.get(&format!("c{i}.party")) {
            Some(p) => Some(Party::parse(p).with_context(|| format!("candidate {i} party"))?),
            None => None,
        };
        candidates.push(Candidate::new(
            CandidateId::parse(get(&format!("c{i}.id"))?).with_context(|| format!("candidate {i} id"))?,
            CandidateName::parse(get(&format!("c{i}.name"))?)
                .with_context(|| format!("candidate {i} name"))?,
            party,
        ));
    }
    let status = get("status")?;
    let visibility = get("visibility")?;
    let parts = ElectionParts {
        id: ElectionId::parse(get("id")?).context("field id")?,
        title: Title::parse(get("title")?).context("field title")?,
        description: Description::parse(get("description")?).context("field description")?,
        window: VotingWindow::new(time("start")?, time("end")?).context("window")?,
        candidates,
        status: ElectionStatus::parse(status).with_context(|| format!("status {status:?}"))?,
        visibility: ResultsVisibility::parse(visibility)
            .with_context(|| format!("visibility {visibility:?}"))?,
        captcha_required: get("captcha")? == "1",
        // A copy cached before policies existed is of a `single` election.
        policy: {
            let number = |name: &str| -> anyhow::Result<Option<i64>> {
                f.get(name)
                    .map(|n| n.parse::<i64>().with_context(|| format!("field {name}")))
                    .transpose()
            };
            VotePolicy::from_parts(
                f.get("policy").map_or("single", String::as_str),
                number("max_votes")?,
                number("max_per_candidate")?,
            )
            .map_err(|e| anyhow::anyhow!("field policy: {e}"))?
        },
        version: get("version")?.parse().context("field version")?,
        created_at: time("created_at")?,
    };
    Election::restore(parts).context("cached election")
}

/// Follows any change feed (this adapter's or another) until `shutdown`
/// resolves: each change makes `copies` forget that election. When the feed
/// fails it resubscribes with backoff (100 ms doubling to 5 s, jittered);
/// every (re)subscription makes `copies` forget everything, since changes
/// may have been missed meanwhile.
pub async fn follow_changes<F: ElectionChangeFeed>(
    feed: &F,
    copies: &impl ElectionCopies,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    use backon::BackoffBuilder;
    let resubscribe_delays = || {
        backon::ExponentialBuilder::default()
            .with_min_delay(std::time::Duration::from_millis(100))
            .with_max_delay(std::time::Duration::from_secs(5))
            .with_jitter()
            .without_max_times()
            .build()
    };
    let mut delays = resubscribe_delays();
    loop {
        let subscribed = tokio::select! {
            () = &mut shutdown => return,
            s = feed.subscribe() => s,
        };
        let mut changes = match subscribed {
            Ok(changes) => {
                delays = resubscribe_delays();
                copies.forget_all();
                changes
            }
            Err(error) => {
                let delay = delays.next().unwrap_or(std::time::Duration::from_secs(5));
                tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, "election change feed unavailable");
                tokio::select! {
                    () = &mut shutdown => return,
                    () = tokio::time::sleep(delay) => {}
                }
                continue;
            }
        };
        loop {
            let next = tokio::select! {
                () = &mut shutdown => return,
                next = changes.next() => next,
            };
            match next {
                Some(ElectionChange::Changed { election_id, kind }) => {
                    tracing::debug!(%election_id, kind = kind.as_str(), "election changed");
                    copies.forget(election_id).await;
                }
                Some(ElectionChange::Resync) => copies.forget_all(),
                None => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, Utc};
    use livevote_testkit::fixtures::new_election;

    #[test]
    fn an_election_round_trips_through_its_hash_fields() {
        let now = Utc::now();
        let new = new_election("Final", &["Ada", "Grace", "Linus"], now, now + Duration::hours(1));
        let e = livevote_testkit::fixtures::create(new, now);
        let fields: HashMap<String, String> = encode_election(&e).into_iter().collect();
        assert_eq!(decode_election(&fields).unwrap(), e);
    }

    #[test]
    fn a_cached_hash_missing_a_field_is_an_error() {
        let now = Utc::now();
        let new = new_election("Final", &["Ada", "Grace"], now, now + Duration::hours(1));
        let e = livevote_testkit::fixtures::create(new, now);
        let mut fields: HashMap<String, String> = encode_election(&e).into_iter().collect();
        fields.remove("c1.name");
        assert!(decode_election(&fields).is_err());
    }
}
