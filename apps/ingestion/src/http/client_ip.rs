//! The client's IP, for rate limiting and the CAPTCHA verifier.
//!
//! `X-Forwarded-For` is believed only as far as the configured number of
//! trusted proxies in front of us: each proxy appends the address it got
//! the request from, so with `n` trusted proxies the client is the `n`-th
//! entry from the right, and everything left of it may be forged by the
//! client. With no trusted proxy the TCP peer is the client.

use std::net::IpAddr;

use axum::http::HeaderMap;

/// The client's address given the TCP peer, the headers and the number of
/// trusted proxies. A header shorter than the proxy chain, or an entry that
/// is not an IP address, falls back to the peer.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted_proxies: usize) -> IpAddr {
    if trusted_proxies == 0 {
        return peer;
    }
    // Several X-Forwarded-For headers form one list, in order.
    let entries: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let Some(index) = entries.len().checked_sub(trusted_proxies) else {
        return peer;
    };
    entries[index].parse().unwrap_or(peer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    const PEER: &str = "10.0.0.9";

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn without_trusted_proxies_the_header_is_ignored() {
        assert_eq!(client_ip(ip(PEER), &headers(&["1.2.3.4"]), 0), ip(PEER));
    }

    #[test]
    fn one_trusted_proxy_takes_the_rightmost_entry_and_ignores_forged_ones() {
        let h = headers(&["6.6.6.6, 203.0.113.5"]);
        assert_eq!(client_ip(ip(PEER), &h, 1), ip("203.0.113.5"));
    }

    #[test]
    fn two_trusted_proxies_skip_the_inner_proxy() {
        let h = headers(&["6.6.6.6", "203.0.113.5, 10.0.0.2"]);
        assert_eq!(client_ip(ip(PEER), &h, 2), ip("203.0.113.5"));
    }

    #[test]
    fn short_or_garbled_headers_fall_back_to_the_peer() {
        assert_eq!(client_ip(ip(PEER), &HeaderMap::new(), 1), ip(PEER));
        assert_eq!(client_ip(ip(PEER), &headers(&["203.0.113.5"]), 2), ip(PEER));
        assert_eq!(client_ip(ip(PEER), &headers(&["not-an-ip"]), 1), ip(PEER));
        assert_eq!(
            client_ip(ip(PEER), &headers(&["2001:db8::1"]), 1),
            ip("2001:db8::1")
        );
    }
}
