//! Human-readable texts shown on air: election titles and descriptions,
//! candidate names and parties. Lengths are counted in characters, after
//! surrounding whitespace is trimmed.

use std::fmt;

/// Why a text is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TextError {
    /// Fewer characters than the minimum (after trimming).
    TooShort { min: usize, len: usize },
    /// More characters than the maximum (after trimming).
    TooLong { max: usize, len: usize },
    /// NUL or another control character (descriptions may hold line breaks and tabs).
    ControlCharacter,
}

impl fmt::Display for TextError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TextError::TooShort { min, len } => {
                write!(f, "must be at least {min} characters long, got {len}")
            }
            TextError::TooLong { max, len } => {
                write!(f, "must be at most {max} characters long, got {len}")
            }
            TextError::ControlCharacter => f.write_str("must not contain control characters"),
        }
    }
}

impl std::error::Error for TextError {}

fn check(s: &str, min: usize, max: usize, multiline: bool) -> Result<String, TextError> {
    let trimmed = s.trim();
    let allowed = |c: char| multiline && matches!(c, '\n' | '\r' | '\t');
    if trimmed.chars().any(|c| c.is_control() && !allowed(c)) {
        return Err(TextError::ControlCharacter);
    }
    let len = trimmed.chars().count();
    if len < min {
        return Err(TextError::TooShort { min, len });
    }
    if len > max {
        return Err(TextError::TooLong { max, len });
    }
    Ok(trimmed.to_owned())
}

macro_rules! text {
    ($(#[$meta:meta])* $name:ident, $min:expr, $max:expr, $multiline:expr) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub struct $name(String);

        impl $name {
            pub const MIN_CHARS: usize = $min;
            pub const MAX_CHARS: usize = $max;

            /// Trims surrounding whitespace, then checks length and characters.
            ///
            /// # Errors
            /// [`TextError`] naming the broken rule.
            pub fn parse(s: &str) -> Result<Self, TextError> {
                check(s, Self::MIN_CHARS, Self::MAX_CHARS, $multiline).map(Self)
            }

            pub fn as_str(&self) -> &str {
                &self.0
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

text!(
    /// An election's title, 3..=200 characters.
    Title, 3, 200, false
);
text!(
    /// An election's description, up to 2000 characters; may be empty and may
    /// hold line breaks.
    Description, 0, 2000, true
);
text!(
    /// A candidate's display name, 1..=200 characters.
    CandidateName, 1, 200, false
);
text!(
    /// Why an election that holds votes was cancelled, 3..=500 characters,
    /// kept in the audit log.
    CancelReason, 3, 500, false
);
text!(
    /// A candidate's party or affiliation, 1..=100 characters. A candidate
    /// without one holds `None` rather than an empty party.
    Party, 1, 100, false
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn title_bounds() {
        assert_eq!(Title::parse("ab"), Err(TextError::TooShort { min: 3, len: 2 }));
        assert_eq!(
            Title::parse("  ab  "),
            Err(TextError::TooShort { min: 3, len: 2 })
        );
        assert_eq!(Title::parse("  Song  ").unwrap().as_str(), "Song");
        assert!(Title::parse(&"t".repeat(200)).is_ok());
        assert_eq!(
            Title::parse(&"t".repeat(201)),
            Err(TextError::TooLong { max: 200, len: 201 })
        );
        // Characters, not bytes: 200 three-byte characters are fine.
        assert!(Title::parse(&"€".repeat(200)).is_ok());
        assert_eq!(Title::parse("Best\nSong"), Err(TextError::ControlCharacter));
        assert_eq!(Title::parse("Best\0Song"), Err(TextError::ControlCharacter));
    }

    #[test]
    fn description_allows_empty_and_line_breaks() {
        assert_eq!(Description::parse("").unwrap().as_str(), "");
        assert!(Description::parse("line one\nline two\r\n\tindented").is_ok());
        assert_eq!(Description::parse("bell\u{7}"), Err(TextError::ControlCharacter));
        assert!(Description::parse(&"d".repeat(2000)).is_ok());
        assert!(Description::parse(&"d".repeat(2001)).is_err());
    }

    #[test]
    fn candidate_name_and_party_bounds() {
        assert!(CandidateName::parse("A").is_ok());
        assert!(CandidateName::parse(" ").is_err());
        assert!(CandidateName::parse(&"n".repeat(201)).is_err());
        assert!(Party::parse(&"p".repeat(100)).is_ok());
        assert!(Party::parse(&"p".repeat(101)).is_err());
        assert!(Party::parse("").is_err());
    }
}
