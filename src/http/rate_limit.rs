//! Per-client rate limiting (tower_governor) and the client IP it keys on.
//!
//! The client IP is the socket peer, unless the peer is a configured trusted
//! proxy: then `X-Forwarded-For` is read right to left and the first address
//! that is not itself a trusted proxy is the client. Anything else would let
//! any caller pick its own rate-limit bucket by sending the header.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Request, Response};
use axum::response::IntoResponse as _;
use governor::middleware::NoOpMiddleware;
use ipnet::IpNet;
use tower_governor::GovernorLayer;
use tower_governor::errors::GovernorError;
use tower_governor::governor::{GovernorConfig, GovernorConfigBuilder};
use tower_governor::key_extractor::KeyExtractor;

use crate::config::RateLimit;
use crate::error::AppError;

/// Keys requests by client IP, honouring trusted proxies.
#[derive(Debug, Clone)]
pub struct ClientIpKey {
    trusted: Arc<[IpNet]>,
}

impl ClientIpKey {
    pub fn new(trusted: &[IpNet]) -> Self {
        Self { trusted: trusted.into() }
    }

    /// The client address of a request that arrived from `peer`.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.is_trusted(peer) {
            return peer;
        }
        let hops = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|hop| hop.trim().parse::<IpAddr>().ok())
            .collect::<Vec<_>>();
        hops.into_iter().rev().find(|ip| !self.is_trusted(*ip)).unwrap_or(peer)
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|net| net.contains(&ip))
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

/// The layer for one role's router, plus a task that forgets idle clients
/// so the limiter's memory stays bounded.
pub fn layer(limit: RateLimit, trusted: &[IpNet]) -> Limiter {
    let period = Duration::from_nanos(1_000_000_000 / u64::from(limit.per_second.max(1)));
    let config: GovernorConfig<ClientIpKey, NoOpMiddleware<governor::clock::QuantaInstant>> =
        GovernorConfigBuilder::default()
            .period(period)
            .burst_size(limit.burst)
            .key_extractor(ClientIpKey::new(trusted))
            .finish()
            .expect("period and burst are non-zero (checked in Config)");
    let config = Arc::new(config);
    let limiter = config.limiter().clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            limiter.retain_recent();
        }
    });
    GovernorLayer::new(config).error_handler(|err| -> Response<Body> {
        match err {
            GovernorError::TooManyRequests { wait_time, .. } => {
                crate::metrics::get().rate_limited.increment(1);
                AppError::RateLimited { retry_after_secs: wait_time }.into_response()
            }
            GovernorError::UnableToExtractKey => AppError::Internal.into_response(),
            GovernorError::Other { .. } => AppError::Internal.into_response(),
        }
    })
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
}
