//! Identifiers and opaque tokens: elections, candidates, votes, voters, actors,
//! correlation ids and idempotency keys. Each one parses once at the edge.

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

/// Why a string is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdError {
    /// The value is empty.
    Empty,
    /// The value is longer than allowed (lengths in bytes).
    TooLong { max: usize, len: usize },
    /// The value contains NUL or another control character.
    ControlCharacter,
    /// The value contains a character outside printable ASCII (`!`..=`~`).
    NotVisibleAscii,
    /// The value is not a UUID in its canonical hyphenated form.
    NotUuid,
    /// A vote id must be a time-ordered UUID (version 7).
    NotVersion7,
}

impl fmt::Display for IdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdError::Empty => f.write_str("must not be empty"),
            IdError::TooLong { max, len } => {
                write!(f, "must be at most {max} bytes long, got {len}")
            }
            IdError::ControlCharacter => f.write_str("must not contain control characters"),
            IdError::NotVisibleAscii => {
                f.write_str("must contain only printable ASCII characters without spaces")
            }
            IdError::NotUuid => f.write_str("must be a UUID such as 0192f1c4-8f3a-7cc0-9d1e-2b7f4a5c6d7e"),
            IdError::NotVersion7 => f.write_str("must be a version 7 (time-ordered) UUID"),
        }
    }
}

impl std::error::Error for IdError {}

/// Parses the canonical hyphenated UUID form only (36 characters), so that the
/// same id never appears under two spellings in logs, keys and rows.
fn parse_uuid(s: &str) -> Result<Uuid, IdError> {
    if s.len() != 36 {
        return Err(IdError::NotUuid);
    }
    Uuid::try_parse(s).map_err(|_| IdError::NotUuid)
}

macro_rules! uuid_id {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Uuid);

        impl $name {
            /// A fresh, time-ordered id.
            pub fn generate() -> Self {
                Self(Uuid::now_v7())
            }

            /// Parses the canonical hyphenated form.
            ///
            /// # Errors
            /// [`IdError::NotUuid`] for anything else.
            pub fn parse(s: &str) -> Result<Self, IdError> {
                parse_uuid(s).map(Self)
            }

            /// Wraps a UUID read back from a trusted store.
            pub fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }
    };
}

uuid_id!(
    /// Identifies an election.
    ElectionId
);
uuid_id!(
    /// Identifies a candidate. Candidate ids are unique across elections, but a
    /// candidate only counts for the election that lists it.
    CandidateId
);

/// Identifies one accepted vote attempt. Always a UUID v7: ids sort by the
/// time they were minted, and a retry after a lost dedup key gets a new id, so
/// auditors can tell a second attempt (a conflict) from a redelivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VoteId(Uuid);

impl VoteId {
    /// A fresh random, time-ordered id.
    pub fn generate() -> Self {
        Self(Uuid::now_v7())
    }

    /// Parses the canonical form of a version 7 UUID.
    ///
    /// # Errors
    /// [`IdError::NotUuid`] or [`IdError::NotVersion7`].
    pub fn parse(s: &str) -> Result<Self, IdError> {
        Self::from_uuid(parse_uuid(s)?)
    }

    /// Accepts a UUID only if it is version 7.
    ///
    /// # Errors
    /// [`IdError::NotVersion7`].
    pub fn from_uuid(uuid: Uuid) -> Result<Self, IdError> {
        if uuid.get_version_num() == 7 {
            Ok(Self(uuid))
        } else {
            Err(IdError::NotVersion7)
        }
    }

    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl fmt::Display for VoteId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl FromStr for VoteId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Checks the rules shared by token subjects: 1..=max bytes, no control characters.
fn check_subject(s: &str, max: usize) -> Result<(), IdError> {
    if s.is_empty() {
        return Err(IdError::Empty);
    }
    if s.len() > max {
        return Err(IdError::TooLong { max, len: s.len() });
    }
    if s.chars().any(char::is_control) {
        return Err(IdError::ControlCharacter);
    }
    Ok(())
}

/// Checks 1..=max bytes of printable ASCII without spaces: values that travel
/// in HTTP headers and queue message attributes.
fn check_visible_ascii(s: &str, max: usize) -> Result<(), IdError> {
    if s.is_empty() {
        return Err(IdError::Empty);
    }
    if s.len() > max {
        return Err(IdError::TooLong { max, len: s.len() });
    }
    if s.bytes().any(|b| b.is_ascii_control()) {
        return Err(IdError::ControlCharacter);
    }
    if !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(IdError::NotVisibleAscii);
    }
    Ok(())
}

macro_rules! string_id {
    ($(#[$meta:meta])* $name:ident, $check:ident, $max:expr) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// Longest accepted value, in bytes.
            pub const MAX_LEN: usize = $max;

            /// # Errors
            /// Why the value is not acceptable ([`IdError`]).
            pub fn parse(s: impl Into<String>) -> Result<Self, IdError> {
                let s = s.into();
                $check(&s, Self::MAX_LEN)?;
                Ok(Self(s))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

string_id!(
    /// The viewer who votes: the `sub` claim of a verified token, never a field
    /// of a request body.
    VoterId,
    check_subject,
    255
);
string_id!(
    /// Who performed an admin action (the admin token's `sub`), for the audit log.
    ActorId,
    check_subject,
    255
);
string_id!(
    /// Follows one request from the HTTP edge through the queue to the stored row.
    CorrelationId,
    check_visible_ascii,
    128
);
string_id!(
    /// A client-chosen key that makes a vote request safe to retry.
    IdempotencyKey,
    check_visible_ascii,
    255
);

impl CorrelationId {
    /// A fresh id for a request that arrived without a usable one.
    pub fn generate() -> Self {
        Self(Uuid::now_v7().simple().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_ids_round_trip_and_reject_other_spellings() {
        let id = ElectionId::generate();
        assert_eq!(ElectionId::parse(&id.to_string()), Ok(id));
        let simple = id.as_uuid().simple().to_string();
        assert_eq!(ElectionId::parse(&simple), Err(IdError::NotUuid));
        assert_eq!(CandidateId::parse("not-a-uuid"), Err(IdError::NotUuid));
        assert_eq!(CandidateId::parse(""), Err(IdError::NotUuid));
    }

    #[test]
    fn vote_ids_are_version_7_and_time_ordered() {
        let a = VoteId::generate();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = VoteId::generate();
        assert!(a < b, "a later id sorts after an earlier one");
        assert_eq!(VoteId::parse(&a.to_string()), Ok(a));
        let v4 = "9f2d8c3a-1b4e-4c5d-8e6f-7a8b9c0d1e2f";
        assert_eq!(VoteId::parse(v4), Err(IdError::NotVersion7));
    }

    #[test]
    fn voter_id_bounds_and_characters() {
        assert!(VoterId::parse("auth0|65f1c2d3e4").is_ok());
        assert!(VoterId::parse("ünïcödé viewer").is_ok());
        assert_eq!(VoterId::parse(""), Err(IdError::Empty));
        assert!(VoterId::parse("x".repeat(255)).is_ok());
        assert_eq!(
            VoterId::parse("x".repeat(256)),
            Err(IdError::TooLong { max: 255, len: 256 })
        );
        // 128 two-byte characters are 256 bytes: the limit is in bytes.
        assert!(matches!(
            VoterId::parse("é".repeat(128)),
            Err(IdError::TooLong { .. })
        ));
        assert_eq!(VoterId::parse("a\0b"), Err(IdError::ControlCharacter));
        assert_eq!(VoterId::parse("a\nb"), Err(IdError::ControlCharacter));
        assert_eq!(VoterId::parse("a\u{7f}b"), Err(IdError::ControlCharacter));
        assert_eq!(VoterId::parse("a\u{85}b"), Err(IdError::ControlCharacter));
    }

    #[test]
    fn header_safe_values() {
        assert!(IdempotencyKey::parse("retry-7f3a_2").is_ok());
        assert_eq!(IdempotencyKey::parse("has space"), Err(IdError::NotVisibleAscii));
        assert_eq!(IdempotencyKey::parse("tab\there"), Err(IdError::ControlCharacter));
        assert_eq!(IdempotencyKey::parse("é"), Err(IdError::NotVisibleAscii));
        assert!(IdempotencyKey::parse("k".repeat(255)).is_ok());
        assert!(IdempotencyKey::parse("k".repeat(256)).is_err());
        let generated = CorrelationId::generate();
        assert!(CorrelationId::parse(generated.as_str()).is_ok());
        assert!(CorrelationId::parse("c".repeat(129)).is_err());
    }
}
