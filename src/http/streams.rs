//! Caps on concurrent event streams: per process (503 beyond) and per client
//! IP (429 beyond), so one client cannot take every connection slot.
//! A client is its network as the rate limiter keys it (an IPv6 /64, an
//! IPv4 address: `rate_limit::client_network`), whatever address is passed.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::http::rate_limit::client_network;
use chantra_core::error::AppError;

pub struct StreamSlots {
    open: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    max_total: usize,
    max_per_ip: usize,
    /// Whether the slots are SSE reader streams, counted in the stream metrics.
    sse: bool,
}

/// One open stream; dropping it frees the slot.
pub struct StreamSlot {
    slots: Arc<StreamSlots>,
    ip: IpAddr,
}

impl StreamSlots {
    pub fn new(max_total: usize, max_per_ip: usize) -> Arc<Self> {
        Arc::new(Self {
            open: AtomicUsize::new(0),
            per_ip: Mutex::new(HashMap::new()),
            max_total,
            max_per_ip,
            sse: true,
        })
    }

    /// The same caps for something other than SSE reader streams (MCP waits,
    /// legacy MCP sessions): not counted in the stream metrics.
    pub fn other(max_total: usize, max_per_ip: usize) -> Arc<Self> {
        Arc::new(Self {
            open: AtomicUsize::new(0),
            per_ip: Mutex::new(HashMap::new()),
            max_total,
            max_per_ip,
            sse: false,
        })
    }

    /// The per-process cap.
    pub fn max_total(&self) -> usize {
        self.max_total
    }

    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    pub fn acquire(self: &Arc<Self>, ip: IpAddr) -> Result<StreamSlot, AppError> {
        let ip = client_network(ip);
        let mut per_ip = self.per_ip.lock().unwrap_or_else(|p| p.into_inner());
        if self.open.load(Ordering::Relaxed) >= self.max_total {
            return Err(AppError::ServerBusy);
        }
        let count = per_ip.entry(ip).or_default();
        if *count >= self.max_per_ip {
            return Err(AppError::TooManyStreams { limit: self.max_per_ip });
        }
        *count += 1;
        self.open.fetch_add(1, Ordering::Relaxed);
        if self.sse {
            let metrics = crate::metrics::get();
            metrics.streams_opened.increment(1);
            metrics.streams_active.increment(1.0);
        }
        Ok(StreamSlot { slots: self.clone(), ip })
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut per_ip = self.slots.per_ip.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = per_ip.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                per_ip.remove(&self.ip);
            }
        }
        self.slots.open.fetch_sub(1, Ordering::Relaxed);
        if self.slots.sse {
            crate::metrics::get().streams_active.decrement(1.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_per_ip_and_total() {
        let slots = StreamSlots::new(3, 2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let first = slots.acquire(a).unwrap();
        let _second = slots.acquire(a).unwrap();
        assert!(matches!(slots.acquire(a), Err(AppError::TooManyStreams { .. })));
        let _third = slots.acquire(b).unwrap();
        assert!(matches!(slots.acquire(b), Err(AppError::ServerBusy)));
        drop(first);
        assert_eq!(slots.open(), 2);
        assert!(slots.acquire(a).is_ok());
    }

    #[test]
    fn one_ipv6_64_is_one_client() {
        let slots = StreamSlots::new(10, 2);
        let ip = |text: &str| text.parse::<IpAddr>().unwrap();
        let _first = slots.acquire(ip("2001:db8:a:b::1")).unwrap();
        let _second = slots.acquire(ip("2001:db8:a:b:ffff::2")).unwrap();
        assert!(matches!(slots.acquire(ip("2001:db8:a:b::3")), Err(AppError::TooManyStreams { .. })));
        assert!(slots.acquire(ip("2001:db8:a:c::1")).is_ok(), "another /64");
    }
}
