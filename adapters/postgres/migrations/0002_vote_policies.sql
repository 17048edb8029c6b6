-- livevote schema, version 2: vote policies (ARCHITECTURE.md, "Vote policies").
--
-- An election's policy says how many votes a viewer has: `single` (one),
-- `multi` (up to max_votes, optionally at most max_per_candidate for one
-- candidate) or `changeable` (one current vote, replaced by each new one).
-- Every vote carries its slot: which of the voter's votes it is (under
-- `changeable`, the change's sequence). One vote per slot is the final
-- arbiter for every policy: a `single` vote is always slot 1, so the unique
-- slot is exactly the old one-vote-per-voter constraint.

ALTER TABLE elections
    ADD COLUMN policy            text     NOT NULL DEFAULT 'single'
        CHECK (policy IN ('single', 'multi', 'changeable')),
    ADD COLUMN max_votes         smallint CHECK (max_votes BETWEEN 1 AND 100),
    ADD COLUMN max_per_candidate smallint CHECK (max_per_candidate BETWEEN 1 AND max_votes),
    ADD CONSTRAINT elections_policy_limits CHECK (
        (policy = 'multi') = (max_votes IS NOT NULL)
        AND (max_per_candidate IS NULL OR policy = 'multi')
    );

ALTER TABLE votes
    ADD COLUMN slot           integer  NOT NULL DEFAULT 1 CHECK (slot >= 1),
    ADD COLUMN candidate_slot smallint CHECK (candidate_slot >= 1);
ALTER TABLE votes ADD CONSTRAINT votes_one_per_slot UNIQUE (election_id, voter_id, slot);
ALTER TABLE votes DROP CONSTRAINT votes_one_per_voter;
-- `multi` with max_per_candidate: one vote per (voter, candidate, slot).
CREATE UNIQUE INDEX votes_one_per_candidate_slot
    ON votes (election_id, voter_id, candidate_id, candidate_slot)
    WHERE candidate_slot IS NOT NULL;

-- A `changeable` voter's current vote: the stored vote with the highest
-- slot. Kept as a row per voter so that concurrent batches serialise on it
-- and move the tallies exactly once per change; replaced_candidate_id is the
-- candidate of the vote the last change replaced (NULL for the first vote).
CREATE TABLE current_votes (
    election_id           uuid    NOT NULL,
    voter_id              text    NOT NULL,
    slot                  integer NOT NULL,
    vote_id               uuid    NOT NULL,
    candidate_id          uuid    NOT NULL,
    replaced_candidate_id uuid,
    PRIMARY KEY (election_id, voter_id)
);

-- Stored votes that are not (or no longer) their voter's current vote under
-- `changeable`, sharded like tallies. Stored votes = tallies + replaced.
CREATE TABLE replaced_shards (
    election_id uuid     NOT NULL,
    shard       smallint NOT NULL,
    votes       bigint   NOT NULL,
    PRIMARY KEY (election_id, shard)
);

-- A change moves a vote out of the old candidate's tally on whichever shard
-- its batch writes: one shard may then go below zero; the sum per candidate
-- (the tally) never does.
ALTER TABLE tally_shards DROP CONSTRAINT tally_shards_votes_check;
