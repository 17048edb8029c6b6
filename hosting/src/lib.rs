//! What hosting a livevote service takes, the same for every service:
//! - [`serve`]: HTTP/1.1 with connection limits and a graceful drain;
//! - [`logs`]: the log settings and the JSON log subscriber;
//! - [`signal`]: the stop signal (SIGTERM or Ctrl-C);
//! - [`config`]: value parsers and a redacted secret for clap configurations;
//! - [`clock`]: the production clocks;
//! - [`faults`]: crash points, compiled in only with the `failpoints` feature.

pub mod clock;
pub mod config;
pub mod connect;
pub mod faults;
pub mod logs;
pub mod serve;
pub mod signal;

pub use clock::{OffsetClock, SystemClock};
pub use logs::LogArgs;
pub use serve::{ServeConfig, serve};
pub use signal::shutdown_signal;
