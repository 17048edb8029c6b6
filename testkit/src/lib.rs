//! Test support for livevote's tests, benchmarks and suites.
//!
//! Only test code uses this crate: every service takes it as a
//! dev-dependency at most, and `scripts/check-deps.sh` fails the build
//! otherwise. It holds:
//! - [`scratch_database`]: a throw-away PostgreSQL database with the schema applied;
//! - [`backends`]: one test's database, Redis prefix, queues and token keys, and the variables a service needs to reach them;
//! - [`fixtures`]: valid elections, votes and actors in one line;
//! - [`Relay`]: a TCP relay that can be cut, to play a dead dependency;
//! - [`ServiceProcess`]: a service binary run as a child process;
//! - [`ManualClock`]: a clock that only moves when told to;
//! - [`sse`]: a Server-Sent Events response read event by event;
//! - [`browser`]: headless Chromium driven over WebDriver, for the page tests.

pub mod backends;
pub mod browser;
mod clock;
pub mod fixtures;
mod relay;
mod scratch;
mod service_process;
pub mod sse;

pub use clock::ManualClock;
pub use relay::Relay;
pub use scratch::{scratch_database, test_server_url};
pub use service_process::ServiceProcess;
