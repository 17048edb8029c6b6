//! Benchmarks and load generators. `adapter-bench` measures the storage
//! adapters against the bare operations they are built from, as ratios
//! measured in one run on one machine; `livevote-load` drives a running
//! stack and checks every accepted vote afterwards ([`load`]);
//! `livevote-hostile` sends it hostile input ([`hostile`]); `livevote-faults`
//! breaks its servers and processes while votes come in ([`faults`]).

pub mod faults;
pub mod hostile;
pub mod load;
pub mod table;

use std::process::ExitCode;
use std::time::Duration;

/// Runs a command-line tool's `main` future on a multi-threaded runtime; an
/// error is printed as `<name>: <cause chain>` with exit code 2 (1 is left to
/// the tools for "checked, and something is wrong").
pub fn run_tool<F>(name: &str, main: F) -> ExitCode
where
    F: Future<Output = anyhow::Result<ExitCode>>,
{
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{name}: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(main) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{name}: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// CPU time (user + system) a process has used so far, from `/proc/<pid>/stat`.
pub fn cpu_time(pid: u32) -> Duration {
    let ticks = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
            let rest = s.rsplit_once(')')?.1.split_whitespace().collect::<Vec<_>>();
            Some(rest.get(11)?.parse::<u64>().ok()? + rest.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0);
    // The kernel's USER_HZ is 100 on Linux.
    Duration::from_millis(ticks * 10)
}

/// Deletes every key under `prefix` (`SCAN` + `UNLINK`, a thousand at a
/// time) and returns how many. The benchmarks call it on their own prefix
/// when they end: keys left behind make the next run's Redis larger, and
/// its per-vote figures with it.
///
/// # Errors
/// Redis refusing a command.
pub async fn delete_redis_prefix(client: &fred::prelude::Client, prefix: &str) -> anyhow::Result<usize> {
    use fred::prelude::{ClientLike, KeysInterface};
    let mut cursor = "0".to_string();
    let mut deleted = 0;
    loop {
        let (next, keys): (String, Vec<String>) = client
            .custom(
                fred::cmd!("SCAN"),
                vec![
                    cursor.clone(),
                    "MATCH".into(),
                    format!("{prefix}:*"),
                    "COUNT".into(),
                    "1000".into(),
                ],
            )
            .await?;
        if !keys.is_empty() {
            deleted += keys.len();
            let _: i64 = client.unlink(keys).await?;
        }
        if next == "0" {
            return Ok(deleted);
        }
        cursor = next;
    }
}
