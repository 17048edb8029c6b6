//! The queue message contract (version 1; ARCHITECTURE.md, step 6 of a vote):
//! `{"v":1,"votes":[{"voteId","electionId","candidateId","voterId","acceptedAt","correlationId"}]}`.
//! Decoding goes through the domain constructors, so a message that decodes
//! holds only valid ids; anything else is poison, never a guess.

use std::borrow::Cow;

use chrono::{DateTime, SecondsFormat, Utc};
use livevote_domain::{
    Ballot, CandidateId, CorrelationId, ElectionId, VoteId, VoteRecord, VoteSlot, VoterId,
};
use livevote_ports::PoisonReason;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The message format version this build writes and reads.
pub const SCHEMA_VERSION: u64 = 1;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OutVote<'a> {
    vote_id: String,
    election_id: String,
    candidate_id: String,
    voter_id: &'a str,
    accepted_at: String,
    correlation_id: &'a str,
    // Left out for the first slot, so a `single` election's messages are
    // the same bytes as before policies existed.
    #[serde(skip_serializing_if = "is_first")]
    slot: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    candidate_slot: Option<u16>,
}

fn is_first(n: &u32) -> bool {
    *n == 1
}

/// Only the version, read when a body does not parse as this version: a
/// message of an unknown version must be reported as such even if the rest
/// would not parse.
#[derive(Deserialize)]
struct Version {
    v: u64,
}

/// A message body as [`decode`] reads it; its derived JSON Schema is the contract.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(
    title = "livevote vote queue message",
    description = "One SQS message carries a batch of accepted votes. Message attributes: schemaVersion (Number), correlationId (String, of the first vote), votes (Number). A consumer that does not know `v` must leave the message for the dead-letter queue, never drop it.",
    extend("$id" = "https://livevote.example/contracts/vote-message.schema.json")
)]
struct InMessage<'a> {
    #[schemars(schema_with = "version_schema")]
    v: u64,
    #[schemars(length(min = 1))]
    #[serde(borrow)]
    votes: Vec<InVote<'a>>,
}

// One vote of a message body (a `//` comment: a doc comment would enter the schema).
// The fields borrow from the body unless they hold escapes: decoding a
// message then allocates only what the vote record keeps.
#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(inline)]
struct InVote<'a> {
    #[schemars(
        description = "UUID v7, a new one per attempt",
        regex(pattern = r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
    )]
    #[serde(borrow)]
    vote_id: Cow<'a, str>,
    #[schemars(regex(pattern = UUID_PATTERN))]
    #[serde(borrow)]
    election_id: Cow<'a, str>,
    #[schemars(regex(pattern = UUID_PATTERN))]
    #[serde(borrow)]
    candidate_id: Cow<'a, str>,
    #[schemars(
        description = "the token's sub; no control characters",
        length(min = 1, max = VoterId::MAX_LEN)
    )]
    #[serde(borrow)]
    voter_id: Cow<'a, str>,
    #[schemars(
        description = "RFC 3339 in UTC; decides whether the vote counts",
        extend("format" = "date-time")
    )]
    #[serde(borrow)]
    accepted_at: Cow<'a, str>,
    #[schemars(
        description = "the HTTP request id; visible ASCII",
        regex(pattern = r"^[!-~]+$"),
        length(max = CorrelationId::MAX_LEN)
    )]
    #[serde(borrow)]
    correlation_id: Cow<'a, str>,
    #[schemars(schema_with = "slot_schema")]
    #[serde(default)]
    slot: Option<u32>,
    #[schemars(schema_with = "candidate_slot_schema")]
    #[serde(default)]
    candidate_slot: Option<u16>,
}

fn slot_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "integer",
        "minimum": 1,
        "maximum": MAX_SLOT,
        "description": "which of the voter's votes this is under the election's policy (under `changeable`, the change number); absent means 1, the only slot of a `single` election"
    })
}

fn candidate_slot_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "integer",
        "minimum": 1,
        "maximum": livevote_domain::MAX_VOTES_LIMIT,
        "description": "under a `multi` policy with `maxPerCandidate`: which of the voter's votes for this candidate this is"
    })
}

/// The highest slot number a store column (a signed 32-bit integer) holds.
const MAX_SLOT: u32 = i32::MAX as u32;

/// A UUID in canonical lower-case form.
const UUID_PATTERN: &str = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$";

fn version_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "const": SCHEMA_VERSION, "description": "message format version" })
}

/// Bytes of a message body around its votes: `{"v":1,"votes":[` and `]}`.
pub const ENVELOPE_BYTES: usize = r#"{"v":1,"votes":[]}"#.len();

/// The JSON of one vote inside a message.
pub fn encode_vote(r: &VoteRecord) -> String {
    let vote = OutVote {
        vote_id: r.vote.vote_id.to_string(),
        election_id: r.vote.election_id.to_string(),
        candidate_id: r.vote.candidate_id.to_string(),
        voter_id: r.vote.voter_id.as_str(),
        accepted_at: r.vote.accepted_at.to_rfc3339_opts(SecondsFormat::AutoSi, true),
        correlation_id: r.correlation_id.as_str(),
        slot: r.vote.slot.number,
        candidate_slot: r.vote.slot.per_candidate,
    };
    let json = serde_json::to_string(&vote).expect("a vote always serialises");
    escape_for_sqs(json)
}

/// SQS refuses a message body containing characters outside #x9, #xA, #xD,
/// #x20-#xD7FF, #xE000-#xFFFD, #x10000-#x10FFFF. serde_json escapes the
/// control characters but not U+FFFE and U+FFFF, which a voter id may hold:
/// without this, one hostile voter id would make SQS refuse a whole message
/// and fail every vote packed with it.
fn escape_for_sqs(json: String) -> String {
    if !json.contains(['\u{fffe}', '\u{ffff}']) {
        return json;
    }
    json.replace('\u{fffe}', "\\ufffe").replace('\u{ffff}', "\\uffff")
}

/// A message body from votes encoded by [`encode_vote`].
pub fn assemble(votes: &[String]) -> String {
    format!("{{\"v\":{SCHEMA_VERSION},\"votes\":[{}]}}", votes.join(","))
}

/// The JSON body of one message carrying `votes`.
pub fn encode(votes: &[VoteRecord]) -> String {
    let parts: Vec<String> = votes.iter().map(encode_vote).collect();
    assemble(&parts)
}

/// The JSON Schema (draft 2020-12) of a message body of [`SCHEMA_VERSION`]:
/// what [`encode`] writes and [`decode`] accepts. Committed as
/// `contracts/vote-message.schema.json`; a test fails when the two differ.
pub fn json_schema() -> serde_json::Value {
    schemars::schema_for!(InMessage).to_value()
}

/// The votes of a message body, or why it is poison.
pub fn decode(body: &str) -> Result<Vec<VoteRecord>, PoisonReason> {
    let undecodable = |why: String| PoisonReason::Undecodable(why);
    // One parse for a good message; only a body that does not parse as
    // this version is read again for its version alone, so that a message
    // of an unknown version is reported as such even if the rest would not parse.
    let message: InMessage = match serde_json::from_str(body) {
        Ok(m) => m,
        Err(e) => {
            let version: Version =
                serde_json::from_str(body).map_err(|e| undecodable(format!("no version: {e}")))?;
            if version.v != SCHEMA_VERSION {
                return Err(PoisonReason::UnknownVersion(version.v));
            }
            return Err(undecodable(e.to_string()));
        }
    };
    if message.v != SCHEMA_VERSION {
        return Err(PoisonReason::UnknownVersion(message.v));
    }
    if message.votes.is_empty() {
        return Err(undecodable("a message with no votes".into()));
    }
    message
        .votes
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            let field = |name: &str, e: &dyn std::fmt::Display| undecodable(format!("vote {i}: {name}: {e}"));
            Ok(VoteRecord {
                vote: Ballot {
                    vote_id: VoteId::parse(&v.vote_id).map_err(|e| field("voteId", &e))?,
                    election_id: ElectionId::parse(&v.election_id).map_err(|e| field("electionId", &e))?,
                    candidate_id: CandidateId::parse(&v.candidate_id)
                        .map_err(|e| field("candidateId", &e))?,
                    voter_id: VoterId::parse(v.voter_id.into_owned()).map_err(|e| field("voterId", &e))?,
                    accepted_at: DateTime::parse_from_rfc3339(&v.accepted_at)
                        .map_err(|e| field("acceptedAt", &e))?
                        .with_timezone(&Utc),
                    slot: VoteSlot {
                        number: match v.slot {
                            None => 1,
                            Some(n) if (1..=MAX_SLOT).contains(&n) => n,
                            Some(n) => return Err(field("slot", &format!("{n} is outside 1..={MAX_SLOT}"))),
                        },
                        per_candidate: match v.candidate_slot {
                            Some(0) => return Err(field("candidateSlot", &"0 is not a slot")),
                            other => other,
                        },
                    },
                },
                correlation_id: CorrelationId::parse(v.correlation_id.into_owned())
                    .map_err(|e| field("correlationId", &e))?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;
    use livevote_domain::{Election, ElectionId};
    use livevote_testkit::fixtures::{new_election, record};

    fn election() -> Election {
        let now = Utc::now();
        Election::create(
            ElectionId::generate(),
            new_election("Final", &["A", "B"], now, now + Duration::hours(1)),
            now,
            livevote_domain::CandidateId::generate,
        )
        .unwrap()
    }

    #[test]
    fn votes_round_trip_exactly_including_nanoseconds_and_odd_voter_ids() {
        let e = election();
        let votes = vec![
            record(&e, "auth0|abc", 0, Utc::now()),
            record(&e, "google-oauth2|\"quoted\" ünïcode", 1, Utc::now()),
        ];
        assert_eq!(decode(&encode(&votes)).unwrap(), votes);
    }

    #[test]
    fn characters_sqs_refuses_are_escaped_and_still_decode() {
        let e = election();
        let votes = vec![record(&e, "odd\u{fffe}voter\u{ffff}", 0, Utc::now())];
        let body = encode(&votes);
        assert!(!body.contains(['\u{fffe}', '\u{ffff}']), "{body:?}");
        assert_eq!(decode(&body).unwrap(), votes);
    }

    #[test]
    fn the_wire_format_is_the_contract() {
        let e = election();
        let votes = vec![record(&e, "v", 0, Utc::now())];
        let json: serde_json::Value = serde_json::from_str(&encode(&votes)).unwrap();
        assert_eq!(json["v"], 1);
        let vote = &json["votes"][0];
        for key in [
            "voteId",
            "electionId",
            "candidateId",
            "voterId",
            "acceptedAt",
            "correlationId",
        ] {
            assert!(vote[key].is_string(), "{key} missing in {vote}");
        }
        // A first slot (every vote of a `single` election) adds nothing.
        assert_eq!(vote.as_object().unwrap().len(), 6);
    }

    #[test]
    fn slots_of_other_policies_travel_and_are_checked() {
        let e = election();
        let mut second = record(&e, "multi", 0, Utc::now());
        second.vote.slot = VoteSlot {
            number: 2,
            per_candidate: Some(1),
        };
        let mut change = record(&e, "changer", 1, Utc::now());
        change.vote.slot = VoteSlot::sequence(70_000);
        let votes = vec![second, change];
        let body = encode(&votes);
        assert!(body.contains("\"slot\":2,\"candidateSlot\":1"), "{body}");
        assert_eq!(decode(&body).unwrap(), votes);
        for (from, to) in [
            ("\"slot\":2", "\"slot\":0"),
            ("\"candidateSlot\":1", "\"candidateSlot\":0"),
        ] {
            let bad = body.replacen(from, to, 1);
            assert!(matches!(decode(&bad), Err(PoisonReason::Undecodable(_))), "{bad}");
        }
        let huge = body.replacen("\"slot\":70000", "\"slot\":4294967295", 1);
        assert!(matches!(decode(&huge), Err(PoisonReason::Undecodable(_))));
    }

    #[test]
    fn anything_else_is_poison_with_a_reason() {
        let e = election();
        let good = encode(&[record(&e, "v", 0, Utc::now())]);
        assert_eq!(
            decode(&good.replacen("\"v\":1", "\"v\":2", 1)),
            Err(PoisonReason::UnknownVersion(2))
        );
        for bad in [
            "not json".to_owned(),
            "{}".to_owned(),
            r#"{"v":1,"votes":[]}"#.to_owned(),
            good.replacen("\"voteId\":\"", "\"voteId\":\"x", 1),
            good.replacen("\"voterId\":\"v\"", "\"voterId\":\"\"", 1),
            good.replacen("\"correlationId\"", "\"extra\":1,\"correlationId\"", 1),
        ] {
            assert!(
                matches!(decode(&bad), Err(PoisonReason::Undecodable(_))),
                "{bad} should be undecodable"
            );
        }
    }
}
