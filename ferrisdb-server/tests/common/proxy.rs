//! A TCP proxy for partition tests on loopback: it forwards connections to one process and
//! refuses (or cuts) those from blocked source addresses. Controller replica `i` connects to
//! the other replicas from its own loopback address [`source_ip`]`(i)`
//! (`--peer-source-ip`), so the proxy in front of each replica can tell them apart.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// The loopback address replica `i` connects to the others from.
pub fn source_ip(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 11 + i as u8))
}

/// A proxy in front of one replica that refuses connections from blocked source addresses
/// and cuts the open ones when a block starts.
pub struct Proxy {
    /// Where it listens.
    pub addr: SocketAddr,
    blocked: watch::Sender<HashSet<IpAddr>>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Starts a proxy to `target` on a free loopback port.
    pub async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let (blocked, watch_blocked) = watch::channel(HashSet::<IpAddr>::new());
        let task = tokio::spawn(async move {
            loop {
                let Ok((inbound, peer)) = listener.accept().await else {
                    return;
                };
                let source = peer.ip();
                if watch_blocked.borrow().contains(&source) {
                    drop(inbound);
                    continue;
                }
                let mut cut = watch_blocked.clone();
                tokio::spawn(async move {
                    let Ok(outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    // Small gRPC messages must not wait for Nagle's algorithm (with delayed
                    // ACKs, 40 ms per exchange).
                    let _ = inbound.set_nodelay(true);
                    let _ = outbound.set_nodelay(true);
                    let (mut ri, mut wi) = inbound.into_split();
                    let (mut ro, mut wo) = outbound.into_split();
                    let copy = async {
                        tokio::select! {
                            _ = tokio::io::copy(&mut ri, &mut wo) => {}
                            _ = tokio::io::copy(&mut ro, &mut wi) => {}
                        }
                    };
                    let blocked = async {
                        loop {
                            if cut.borrow_and_update().contains(&source) {
                                return;
                            }
                            if cut.changed().await.is_err() {
                                std::future::pending::<()>().await;
                            }
                        }
                    };
                    tokio::select! {
                        _ = copy => {}
                        _ = blocked => {}
                    }
                });
            }
        });
        Proxy {
            addr,
            blocked,
            task,
        }
    }

    /// Refuses (and cuts) connections from `sources`.
    pub fn block(&self, sources: impl IntoIterator<Item = IpAddr>) {
        self.blocked.send_modify(|b| b.extend(sources));
    }

    /// Lets every source through again.
    pub fn heal(&self) {
        self.blocked.send_modify(HashSet::clear);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
