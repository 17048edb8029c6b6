//! The schedule of a run, computed before the clock starts: when each vote
//! attempt is due (open loop: the times never depend on how fast the server
//! answers) and what kind of attempt it is.

use std::time::Duration;

/// How the arrival rate evolves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateShape {
    /// Attempts per second once at full rate.
    pub rate: f64,
    /// Linear ramp from 0 to `rate` over this many seconds (0: full rate at once).
    pub ramp_secs: f64,
    /// Length of the voting phase, ramp included.
    pub duration_secs: f64,
}

impl RateShape {
    /// Attempts scheduled in the first `t` seconds (the integral of the rate).
    pub fn cumulative(&self, t: f64) -> f64 {
        let t = t.clamp(0.0, self.duration_secs);
        if self.ramp_secs <= 0.0 {
            return self.rate * t;
        }
        if t < self.ramp_secs {
            self.rate * t * t / (2.0 * self.ramp_secs)
        } else {
            self.rate * self.ramp_secs / 2.0 + self.rate * (t - self.ramp_secs)
        }
    }

    /// Total attempts of the run.
    pub fn total(&self) -> usize {
        self.cumulative(self.duration_secs).floor() as usize
    }

    /// When attempt `n` (from 0) is due: the inverse of [`Self::cumulative`].
    pub fn due(&self, n: usize) -> Duration {
        let n = n as f64;
        let ramp_attempts = self.rate * self.ramp_secs / 2.0;
        let secs = if self.ramp_secs > 0.0 && n < ramp_attempts {
            (2.0 * n * self.ramp_secs / self.rate).sqrt()
        } else {
            self.ramp_secs.max(0.0) + (n - ramp_attempts.max(0.0)) / self.rate
        };
        Duration::from_secs_f64(secs.max(0.0))
    }
}

/// Shares of the attempts that are not a viewer's first vote, in percent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Mix {
    /// A viewer who already voted tries again (for another candidate): 409 DUPLICATE_VOTE.
    pub repeat: u32,
    /// A vote for an election that has closed: 409 ELECTION_CLOSED.
    pub closed: u32,
    /// A vote for an election that does not exist: 404 ELECTION_NOT_FOUND.
    pub unknown: u32,
}

/// What one attempt is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// The viewer's first vote in the election under test: must be accepted.
    First,
    /// A second try by a viewer whose first attempt came earlier.
    Repeat,
    /// For the closed election.
    Closed,
    /// For an election id nobody created.
    Unknown,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::First, Kind::Repeat, Kind::Closed, Kind::Unknown];

    pub fn label(self) -> &'static str {
        match self {
            Kind::First => "first",
            Kind::Repeat => "repeat",
            Kind::Closed => "closed",
            Kind::Unknown => "unknown",
        }
    }
}

/// One scheduled attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    pub due: Duration,
    pub kind: Kind,
    /// Index of the viewer (and of their token).
    pub voter: usize,
    /// Index of the candidate chosen.
    pub candidate: usize,
}

/// The whole schedule.
#[derive(Debug, Clone)]
pub struct Plan {
    pub attempts: Vec<Attempt>,
    /// Distinct viewers: one per first vote.
    pub voters: usize,
}

/// Popularity of the candidates, in percent (four candidates).
pub const WEIGHTS: [u64; 4] = [40, 30, 20, 10];

/// A well-mixed 64-bit hash of `n` (splitmix64): deterministic "randomness",
/// so a scenario schedules the same attempts on every run.
fn mix64(n: u64) -> u64 {
    let mut z = n.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The candidate viewer `voter` prefers.
pub fn preferred(voter: usize) -> usize {
    let roll = mix64(voter as u64 ^ 0xC0FFEE) % 100;
    let mut acc = 0;
    for (c, w) in WEIGHTS.iter().enumerate() {
        acc += w;
        if roll < acc {
            return c;
        }
    }
    0
}

impl Plan {
    /// Schedules `shape`'s attempts with `mix`. Repeats only come from viewers
    /// whose first attempt is earlier; closed/unknown attempts use any viewer.
    pub fn new(shape: RateShape, mix: Mix) -> Self {
        let total = shape.total();
        let mut attempts = Vec::with_capacity(total);
        let mut voters = 0usize;
        let mut pending_other = Vec::new();
        for n in 0..total {
            let roll = (mix64(n as u64) % 100) as u32;
            let due = shape.due(n);
            let kind = if roll < mix.unknown {
                Kind::Unknown
            } else if roll < mix.unknown + mix.closed {
                Kind::Closed
            } else if roll < mix.unknown + mix.closed + mix.repeat && voters > 0 {
                Kind::Repeat
            } else {
                Kind::First
            };
            let pick = mix64(n as u64 ^ 0x5EED) as usize;
            let (voter, candidate) = match kind {
                Kind::First => {
                    voters += 1;
                    (voters - 1, preferred(voters - 1))
                }
                Kind::Repeat => {
                    let v = pick % voters;
                    (v, (preferred(v) + 1) % WEIGHTS.len())
                }
                // Their viewer is chosen once the number of viewers is known.
                Kind::Closed | Kind::Unknown => {
                    pending_other.push(attempts.len());
                    (pick, pick % WEIGHTS.len())
                }
            };
            attempts.push(Attempt {
                due,
                kind,
                voter,
                candidate,
            });
        }
        let voters = voters.max(1);
        for i in pending_other {
            attempts[i].voter %= voters;
        }
        Self { attempts, voters }
    }

    pub fn count(&self, kind: Kind) -> usize {
        self.attempts.iter().filter(|a| a.kind == kind).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_rate_spaces_attempts_evenly() {
        let shape = RateShape {
            rate: 200.0,
            ramp_secs: 0.0,
            duration_secs: 10.0,
        };
        assert_eq!(shape.total(), 2000);
        assert_eq!(shape.due(0), Duration::ZERO);
        assert_eq!(shape.due(200), Duration::from_secs(1));
        assert_eq!(shape.due(1999), Duration::from_secs_f64(9.995));
    }

    #[test]
    fn a_spike_ramps_up_then_holds_the_rate() {
        let shape = RateShape {
            rate: 1000.0,
            ramp_secs: 4.0,
            duration_secs: 10.0,
        };
        // 2000 attempts in the ramp (the triangle), then 6 s at 1000/s.
        assert_eq!(shape.total(), 8000);
        let half_ramp = shape.due(500).as_secs_f64();
        assert!((half_ramp - 2.0).abs() < 1e-9, "{half_ramp}");
        assert!((shape.due(2000).as_secs_f64() - 4.0).abs() < 1e-9);
        assert!((shape.due(3000).as_secs_f64() - 5.0).abs() < 1e-9);
        // The schedule never goes back in time and stays inside the run.
        let dues: Vec<_> = (0..shape.total()).map(|n| shape.due(n)).collect();
        assert!(dues.windows(2).all(|w| w[0] <= w[1]));
        assert!(dues.last().unwrap().as_secs_f64() < 10.0);
        // The first second of the ramp holds far fewer attempts than the last.
        let first = dues.iter().filter(|d| d.as_secs_f64() < 1.0).count();
        let fourth = dues
            .iter()
            .filter(|d| (3.0..4.0).contains(&d.as_secs_f64()))
            .count();
        assert_eq!((first, fourth), (125, 875));
    }

    #[test]
    fn the_mix_follows_the_shares_and_repeats_follow_a_first_vote() {
        let shape = RateShape {
            rate: 1000.0,
            ramp_secs: 0.0,
            duration_secs: 20.0,
        };
        let plan = Plan::new(
            shape,
            Mix {
                repeat: 10,
                closed: 3,
                unknown: 2,
            },
        );
        let n = plan.attempts.len() as f64;
        let share = |k| plan.count(k) as f64 / n * 100.0;
        assert!(
            (share(Kind::Repeat) - 10.0).abs() < 1.0,
            "{}",
            share(Kind::Repeat)
        );
        assert!((share(Kind::Closed) - 3.0).abs() < 0.5);
        assert!((share(Kind::Unknown) - 2.0).abs() < 0.5);
        assert_eq!(plan.voters, plan.count(Kind::First));
        let mut first_seen = vec![false; plan.voters];
        for a in &plan.attempts {
            assert!(a.voter < plan.voters);
            match a.kind {
                Kind::First => {
                    assert!(!first_seen[a.voter], "viewer {} votes first twice", a.voter);
                    first_seen[a.voter] = true;
                    assert_eq!(a.candidate, preferred(a.voter));
                }
                Kind::Repeat => {
                    assert!(first_seen[a.voter], "a repeat before the first vote");
                    assert_ne!(a.candidate, preferred(a.voter));
                }
                Kind::Closed | Kind::Unknown => {}
            }
        }
    }

    #[test]
    fn candidates_follow_their_popularity() {
        let mut counts = [0usize; 4];
        for v in 0..20_000 {
            counts[preferred(v)] += 1;
        }
        for (c, w) in WEIGHTS.iter().enumerate() {
            let share = counts[c] as f64 / 200.0;
            assert!((share - *w as f64).abs() < 1.5, "{counts:?}");
        }
    }
}
