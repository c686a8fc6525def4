//! Per-client rate limiting (tower_governor) and the client IP it keys on.
//!
//! The client IP is the socket peer, unless the peer is a configured trusted
//! proxy: then `X-Forwarded-For` is read right to left and the first address
//! that is not itself a trusted proxy is the client. Anything else would let
//! any caller pick its own rate-limit bucket by sending the header.
//!
//! The key is the client's network, not its address: an IPv4 address as it
//! is (/32), an IPv6 address by its /64, the prefix one end site (one home,
//! one VM) is normally given whole, so that one host cannot take 2^64
//! buckets by rotating addresses (ntfy keys IPv6 visitors by /64 too). An
//! IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) is the IPv4 client it maps.
//! Every per-client limit — rate limits here, stream caps, MCP sessions —
//! keys on [`ClientIpKey::client_ip`].

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Request, Response};
use governor::middleware::NoOpMiddleware;
use ipnet::IpNet;
use tokio_util::sync::CancellationToken;
use tower_governor::GovernorLayer;
use tower_governor::errors::GovernorError;
use tower_governor::governor::{GovernorConfig, GovernorConfigBuilder};
use tower_governor::key_extractor::KeyExtractor;

use chantra_core::error::AppError;

pub use crate::http::settings::RateLimit;

/// Keys requests by client IP, honouring trusted proxies.
#[derive(Debug, Clone)]
pub struct ClientIpKey {
    trusted: Arc<[IpNet]>,
}

impl ClientIpKey {
    pub fn new(trusted: &[IpNet]) -> Self {
        Self { trusted: trusted.into() }
    }

    /// The key of the client a request that arrived from `peer` came from:
    /// its network ([`client_network`]), not its full address.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        client_network(self.client_address(peer, headers))
    }

    /// The full client address: the peer, or the hop nearest a trusted proxy.
    fn client_address(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        // Canonical first, so `::ffff:127.0.0.1` from a dual-stack socket is a trusted 127.0.0.1.
        let peer = peer.to_canonical();
        if !self.is_trusted(peer) {
            return peer;
        }
        let hops = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|hop| hop.trim().parse::<IpAddr>().ok())
            .map(|hop| hop.to_canonical())
            .collect::<Vec<_>>();
        hops.into_iter().rev().find(|ip| !self.is_trusted(*ip)).unwrap_or(peer)
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|net| net.contains(&ip))
    }
}

/// Bits of an IPv6 address that name one client (see the module doc).
pub const IPV6_CLIENT_PREFIX: u32 = 64;

/// The network `ip` belongs to as a client: an IPv4 address (mapped or not)
/// as itself, an IPv6 address with all but its first [`IPV6_CLIENT_PREFIX`]
/// bits cleared.
pub fn client_network(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let mask = u128::MAX << (128 - IPV6_CLIENT_PREFIX);
            IpAddr::V6(Ipv6Addr::from_bits(v6.to_bits() & mask))
        }
    }
}

impl KeyExtractor for ClientIpKey {
    type Key = IpAddr;

    fn extract<T>(&self, req: &Request<T>) -> Result<IpAddr, GovernorError> {
        let peer = req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|info| info.0.ip())
            .ok_or(GovernorError::UnableToExtractKey)?;
        Ok(self.client_ip(peer, req.headers()))
    }
}

pub type Limiter = GovernorLayer<ClientIpKey, NoOpMiddleware<governor::clock::QuantaInstant>, Body>;

/// How often idle clients' buckets are forgotten.
const CLEANUP_INTERVAL: Duration = Duration::from_secs(60);

/// One role's per-client buckets: its router's layer ([`ClientLimiter::layer`])
/// counts requests in them; the `rate_limit_cleanup` task (app.rs,
/// [`forget_idle_clients`]) drops idle clients' buckets so the memory stays
/// bounded. Cheap to clone.
#[derive(Clone)]
pub struct ClientLimiter {
    config: Arc<GovernorConfig<ClientIpKey, NoOpMiddleware<governor::clock::QuantaInstant>>>,
}

impl ClientLimiter {
    pub fn new(limit: RateLimit, trusted: &[IpNet]) -> Self {
        let period = Duration::from_nanos(1_000_000_000 / u64::from(limit.per_second.max(1)));
        let config = GovernorConfigBuilder::default()
            .period(period)
            .burst_size(limit.burst)
            .key_extractor(ClientIpKey::new(trusted))
            .finish()
            .expect("period and burst are non-zero (checked in Config)");
        Self { config: Arc::new(config) }
    }

    /// The layer for the role's router.
    pub fn layer(&self) -> Limiter {
        GovernorLayer::new(self.config.clone()).error_handler(|err| -> Response<Body> {
            match err {
                GovernorError::TooManyRequests { wait_time, .. } => {
                    crate::metrics::get().rate_limited.increment(1);
                    crate::http::error::respond(AppError::RateLimited { retry_after_secs: wait_time })
                }
                GovernorError::UnableToExtractKey => crate::http::error::respond(AppError::Internal),
                GovernorError::Other { .. } => crate::http::error::respond(AppError::Internal),
            }
        })
    }
}

/// Forgets the buckets of clients idle long enough to be full again, in
/// every limiter, once a [`CLEANUP_INTERVAL`], until `shutdown`.
pub async fn forget_idle_clients(limiters: Vec<ClientLimiter>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(CLEANUP_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        for limiter in &limiters {
            limiter.config.limiter().retain_recent();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(xff: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", xff.parse().unwrap());
        h
    }

    #[test]
    fn untrusted_peer_cannot_spoof() {
        let key = ClientIpKey::new(&[]);
        let peer: IpAddr = "203.0.113.9".parse().unwrap();
        assert_eq!(key.client_ip(peer, &headers("1.2.3.4")), peer);
    }

    #[test]
    fn trusted_proxy_forwards_the_client() {
        let key = ClientIpKey::new(&["10.0.0.0/8".parse().unwrap()]);
        let peer: IpAddr = "10.0.0.2".parse().unwrap();
        // The client may prepend anything; only the hop our proxy appended counts.
        assert_eq!(
            key.client_ip(peer, &headers("6.6.6.6, 198.51.100.7, 10.0.0.3")),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
        assert_eq!(key.client_ip(peer, &HeaderMap::new()), peer);
        assert_eq!(key.client_ip(peer, &headers("garbage")), peer);
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_64() {
        let key = ClientIpKey::new(&[]);
        for peer in ["2001:db8:a:b::1", "2001:db8:a:b:ffff:ffff:ffff:ffff", "2001:db8:a:b::"] {
            assert_eq!(key.client_ip(ip(peer), &HeaderMap::new()), ip("2001:db8:a:b::"), "{peer}");
        }
        assert_eq!(client_network(ip("2001:db8:a:c::1")), ip("2001:db8:a:c::"));
        assert_eq!(client_network(ip("::1")), ip("::"));
        // IPv4, mapped or not, keeps every bit.
        for peer in ["198.51.100.7", "::ffff:198.51.100.7", "::ffff:c633:6407"] {
            assert_eq!(key.client_ip(ip(peer), &HeaderMap::new()), ip("198.51.100.7"), "{peer}");
        }
        assert_eq!(client_network(ip("198.51.100.8")), ip("198.51.100.8"));
    }

    #[test]
    fn forwarded_clients_are_keyed_by_network_and_mapped_proxies_are_trusted() {
        let key = ClientIpKey::new(&["127.0.0.1/32".parse().unwrap(), "2001:db8:ffff::/48".parse().unwrap()]);
        let forwarded = headers("2001:db8:a:b:1:2:3:4, 2001:db8:ffff::9");
        assert_eq!(key.client_ip(ip("127.0.0.1"), &forwarded), ip("2001:db8:a:b::"));
        assert_eq!(key.client_ip(ip("::ffff:127.0.0.1"), &forwarded), ip("2001:db8:a:b::"), "dual-stack peer");
        assert_eq!(key.client_ip(ip("127.0.0.1"), &headers("::ffff:203.0.113.5")), ip("203.0.113.5"));
        assert_eq!(key.client_ip(ip("127.0.0.1"), &headers("::ffff:127.0.0.1")), ip("127.0.0.1"), "a proxy hop");
    }
}
