//! Key and channel names; the layout is described in the crate docs.

use std::num::NonZeroU16;

use livevote_domain::{ElectionId, TallyShard, VoterId};

/// Builds the keys of one configured prefix.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    prefix: String,
    shards: NonZeroU16,
}

impl Keys {
    pub(crate) fn new(prefix: &str, shards: NonZeroU16) -> Self {
        Self {
            prefix: prefix.to_owned(),
            shards,
        }
    }

    pub(crate) fn shard_of(&self, voter: &VoterId) -> u16 {
        TallyShard::of(voter, self.shards).index()
    }

    pub(crate) fn shard_count(&self) -> u16 {
        self.shards.get()
    }

    /// `P:{e:E:S}:v:<voter>`
    pub(crate) fn claim(&self, election: ElectionId, voter: &VoterId) -> String {
        let shard = self.shard_of(voter);
        format!("{}:{{e:{election}:{shard}}}:v:{}", self.prefix, voter.as_str())
    }

    /// `P:{e:E:S}:s:<voter>`: the slots of a `multi` or `changeable` voter.
    pub(crate) fn slots(&self, election: ElectionId, voter: &VoterId) -> String {
        let shard = self.shard_of(voter);
        format!("{}:{{e:{election}:{shard}}}:s:{}", self.prefix, voter.as_str())
    }

    /// `P:{e:E:S}:replaced`: confirmed `changeable` votes that are not current.
    pub(crate) fn replaced(&self, election: ElectionId, shard: u16) -> String {
        format!("{}:{{e:{election}:{shard}}}:replaced", self.prefix)
    }

    /// `P:{e:E:S}:tally`
    pub(crate) fn tally(&self, election: ElectionId, shard: u16) -> String {
        format!("{}:{{e:{election}:{shard}}}:tally", self.prefix)
    }

    /// `P:election:E`
    pub(crate) fn election(&self, election: ElectionId) -> String {
        format!("{}:election:{election}", self.prefix)
    }

    /// `P:elections:changes`
    pub(crate) fn changes_channel(&self) -> String {
        format!("{}:elections:changes", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The part of a key Redis Cluster hashes: the first `{...}` with something inside.
    fn hash_tag(key: &str) -> &str {
        let open = key.find('{').unwrap();
        let close = open + key[open..].find('}').unwrap();
        &key[open + 1..close]
    }

    #[test]
    fn a_claim_and_the_tally_it_bumps_share_a_hash_tag_even_with_braces_in_the_voter() {
        let keys = Keys::new("lv", TallyShard::DEFAULT_COUNT);
        let e = ElectionId::generate();
        for voter in ["auth0|abc", "evil}{voter", "{x}"] {
            let v = VoterId::parse(voter).unwrap();
            let claim = keys.claim(e, &v);
            let tally = keys.tally(e, keys.shard_of(&v));
            assert_eq!(hash_tag(&claim), hash_tag(&tally), "{claim} / {tally}");
            assert_eq!(hash_tag(&claim), format!("e:{e}:{}", keys.shard_of(&v)));
        }
    }

    #[test]
    fn the_shard_is_the_domain_shard() {
        let keys = Keys::new("lv", TallyShard::DEFAULT_COUNT);
        // Pinned in the domain against an independent computation.
        assert_eq!(keys.shard_of(&VoterId::parse("auth0|abc").unwrap()), 61);
    }
}
