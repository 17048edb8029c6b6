//! Viewer tokens, signed before the timed part of a run (RS256 signing costs
//! far more than verifying) on every core, and kept in a cache file so the
//! next run against the same issuer starts at once.

use std::io::IsTerminal;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use livevote_auth0::{DevIssuer, DevTokenClaims};

/// How long minted tokens live; a cache is reused while at least [`MIN_LEFT`] remains.
const TTL: Duration = Duration::from_secs(24 * 3600);
const MIN_LEFT: Duration = Duration::from_secs(3 * 3600);

/// The subject of viewer `i`.
pub fn voter_sub(i: usize) -> String {
    format!("load|viewer-{i:07}")
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The first line of a cache file: who signed the tokens and until when they are good.
fn header(issuer: &DevIssuer, expires: u64) -> String {
    format!(
        "livevote-load tokens v1 kid={} iss={} aud={} exp={expires}",
        issuer.kid(),
        issuer.issuer(),
        issuer.audience()
    )
}

/// Reads cached tokens if they were signed by `issuer` and live long enough; at most `n`.
fn read_cache(path: &Path, issuer: &DevIssuer, n: usize) -> Option<(Vec<String>, u64)> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut lines = text.lines();
    let first = lines.next()?;
    let expires: u64 = first.rsplit_once("exp=")?.1.parse().ok()?;
    if first != header(issuer, expires) || expires < now_secs() + MIN_LEFT.as_secs() {
        return None;
    }
    Some((lines.take(n).map(str::to_owned).collect(), expires))
}

/// `n` viewer tokens: from the cache as far as it goes, the rest signed now
/// (progress on stderr) and the cache rewritten. `cache` = `none` disables it.
pub fn viewer_tokens(issuer: &DevIssuer, n: usize, cache: &Path) -> anyhow::Result<Vec<String>> {
    let use_cache = cache.as_os_str() != "none";
    let expires = now_secs() + TTL.as_secs();
    let (mut tokens, file_expires) = match use_cache.then(|| read_cache(cache, issuer, n)).flatten() {
        Some((cached, until)) => (cached, until),
        None => (Vec::new(), expires),
    };
    if tokens.len() >= n {
        eprintln!("{n} viewer tokens from {}", cache.display());
        return Ok(tokens);
    }
    let have = tokens.len();
    let missing = n - have;
    let done = AtomicUsize::new(0);
    let workers = std::thread::available_parallelism().map_or(2, |p| p.get());
    let terminal = std::io::stderr().is_terminal();
    eprintln!("signing {missing} viewer tokens on {workers} threads");
    let fresh: Vec<Vec<String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let done = &done;
                scope.spawn(move || {
                    let mut out = Vec::new();
                    let mut i = have + w;
                    while i < n {
                        let mut claims = DevTokenClaims::viewer(voter_sub(i));
                        claims.ttl = TTL;
                        out.push(issuer.token(&claims));
                        let d = done.fetch_add(1, Ordering::Relaxed) + 1;
                        if w == 0
                            && (d.is_multiple_of(2000) || d == missing)
                            && (terminal || d.is_multiple_of(20_000))
                        {
                            eprint!("\r  signed {d}/{missing}");
                        }
                        i += workers;
                    }
                    out
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    });
    eprintln!("\r  signed {missing}/{missing}");
    // Interleave the workers' slices back into viewer order.
    for k in 0..missing {
        let w = k % workers;
        let token = fresh[w]
            .get(k / workers)
            .cloned()
            .context("a signing thread stopped early")?;
        tokens.push(token);
    }
    if use_cache {
        if let Some(dir) = cache.parent() {
            std::fs::create_dir_all(dir).ok();
        }
        // The header keeps the earliest expiry of the tokens in the file.
        let mut text = header(issuer, file_expires.min(expires));
        for t in &tokens {
            text.push('\n');
            text.push_str(t);
        }
        std::fs::write(cache, text)
            .with_context(|| format!("writing the token cache {}", cache.display()))?;
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_cached_per_issuer_and_reused() {
        let dir = std::env::temp_dir().join(format!("lv-load-tokens-{}", std::process::id()));
        let cache = dir.join("tokens.txt");
        let issuer = DevIssuer::builtin("http://127.0.0.1:1/", "aud");
        let first = viewer_tokens(&issuer, 5, &cache).unwrap();
        assert_eq!(first.len(), 5);
        assert_eq!(first.iter().collect::<std::collections::HashSet<_>>().len(), 5);
        // Fewer needed: the cache answers with the same tokens.
        let again = viewer_tokens(&issuer, 3, &cache).unwrap();
        assert_eq!(again, first[..3]);
        // Another issuer: the cache does not apply.
        let other = DevIssuer::builtin("http://127.0.0.1:2/", "aud");
        assert!(read_cache(&cache, &other, 3).is_none());
        // More needed than cached: the first ones are kept, in viewer order, and all are cached.
        let more = viewer_tokens(&issuer, 8, &cache).unwrap();
        assert_eq!(more[..5], first[..]);
        assert_eq!(more.len(), 8);
        assert_eq!(read_cache(&cache, &issuer, 100).unwrap().0, more);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
