//! A TCP forwarder between a server under test and what it talks to
//! (PostgreSQL, S3), for outages a test switches on and off.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

/// A TCP forwarder in front of a real server that a test can switch off:
/// either entirely (`set_up(false)`: open connections are cut too) or for new
/// connections only (`refuse_new(true)`: what is connected stays connected).
pub struct FaultProxy {
    pub addr: SocketAddr,
    /// New connections are forwarded.
    accepting: Arc<AtomicBool>,
    /// Open connections keep flowing.
    alive: Arc<AtomicBool>,
}

impl FaultProxy {
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepting = Arc::new(AtomicBool::new(true));
        let alive = Arc::new(AtomicBool::new(true));
        let (accept, live) = (accepting.clone(), alive.clone());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !accept.load(Ordering::SeqCst) {
                    drop(inbound); // connection reset: the server is "down"
                    continue;
                }
                let live = live.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(target).await else { return };
                    // Copy until either side closes or the proxy is switched off.
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = async { while live.load(Ordering::SeqCst) { tokio::time::sleep(Duration::from_millis(20)).await } } => {}
                    }
                });
            }
        });
        Self { addr, accepting, alive }
    }

    /// Switches the proxy; when switching off, waits until open
    /// connections have been cut too.
    pub async fn set_up(&self, up: bool) {
        self.accepting.store(up, Ordering::SeqCst);
        self.alive.store(up, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    /// Refuses (or accepts again) new connections, leaving open ones alone.
    pub fn refuse_new(&self, refuse: bool) {
        self.accepting.store(!refuse, Ordering::SeqCst);
    }
}
