-- livevote schema, version 1.
-- Elections and candidates, votes with the one-vote-per-voter constraint,
-- sharded persisted tallies, conflicting votes for auditors, sharded
-- redelivery counters, and the append-only admin audit log.

CREATE TABLE elections (
    election_id      uuid PRIMARY KEY,
    title            text        NOT NULL,
    description      text        NOT NULL,
    starts_at        timestamptz NOT NULL,
    ends_at          timestamptz NOT NULL,
    status           text        NOT NULL CHECK (status IN ('DRAFT', 'SCHEDULED', 'ACTIVE', 'CLOSED', 'CANCELLED')),
    visibility       text        NOT NULL CHECK (visibility IN ('LIVE', 'HIDDEN')),
    captcha_required boolean     NOT NULL,
    version          bigint      NOT NULL CHECK (version > 0),
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    CHECK (ends_at > starts_at)
);
CREATE INDEX elections_created ON elections (created_at DESC, election_id DESC);

CREATE TABLE candidates (
    candidate_id uuid    PRIMARY KEY,
    election_id  uuid    NOT NULL REFERENCES elections (election_id),
    position     integer NOT NULL,
    name         text    NOT NULL,
    party        text,
    -- Target of the votes' composite foreign key: a vote can only name a
    -- candidate of its own election.
    UNIQUE (election_id, candidate_id)
);

CREATE TABLE votes (
    vote_id        uuid        PRIMARY KEY,
    election_id    uuid        NOT NULL,
    candidate_id   uuid        NOT NULL,
    voter_id       text        NOT NULL,
    accepted_at    timestamptz NOT NULL,
    persisted_at   timestamptz NOT NULL DEFAULT now(),
    correlation_id text        NOT NULL,
    -- ARCHITECTURE.md invariant 1: the final arbiter of one vote per viewer.
    CONSTRAINT votes_one_per_voter UNIQUE (election_id, voter_id),
    FOREIGN KEY (election_id, candidate_id) REFERENCES candidates (election_id, candidate_id)
);
CREATE INDEX votes_election_candidate ON votes (election_id, candidate_id);
CREATE INDEX votes_election_accepted ON votes (election_id, accepted_at);

-- Persisted tallies as counter rows: each batch adds to one randomly chosen
-- shard, so concurrent batches rarely wait on the same row.
CREATE TABLE tally_shards (
    election_id  uuid     NOT NULL,
    candidate_id uuid     NOT NULL,
    shard        smallint NOT NULL,
    votes        bigint   NOT NULL CHECK (votes >= 0),
    PRIMARY KEY (election_id, candidate_id, shard),
    FOREIGN KEY (election_id, candidate_id) REFERENCES candidates (election_id, candidate_id)
);

-- A second vote id for a voter who already has a vote: dropped, kept for auditors.
CREATE TABLE vote_conflicts (
    vote_id          uuid        PRIMARY KEY,
    election_id      uuid        NOT NULL,
    candidate_id     uuid        NOT NULL,
    voter_id         text        NOT NULL,
    existing_vote_id uuid        NOT NULL,
    accepted_at      timestamptz NOT NULL,
    correlation_id   text        NOT NULL,
    recorded_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX vote_conflicts_election ON vote_conflicts (election_id);

-- Redelivered copies of stored votes (informational), sharded like tallies.
CREATE TABLE redelivery_shards (
    election_id uuid     NOT NULL,
    shard       smallint NOT NULL,
    copies      bigint   NOT NULL,
    PRIMARY KEY (election_id, shard)
);

CREATE TABLE audit_log (
    seq         bigserial   PRIMARY KEY,
    election_id uuid        NOT NULL REFERENCES elections (election_id),
    actor       text        NOT NULL,
    action      text        NOT NULL,
    at          timestamptz NOT NULL,
    version     bigint      NOT NULL,
    details     text        NOT NULL
);
CREATE INDEX audit_log_election ON audit_log (election_id, seq);
