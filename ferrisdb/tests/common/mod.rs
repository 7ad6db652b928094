//! Helpers shared by the `ferrisdb` binary's integration tests: the binary's path, free
//! loopback ports and the text of a finished command's output.

#![allow(dead_code)]

pub mod cluster_up;

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Output;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The `ferrisdb` binary under test.
pub fn ferrisdb_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ferrisdb"))
}

/// A base port with `count` consecutive ports free on 127.0.0.1 a moment ago. Each call of
/// a test process starts its search elsewhere (tests run in parallel threads: two calls must
/// not hand out the same range).
pub fn free_port_range(count: u16) -> u16 {
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let call = CALLS.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::from(d.subsec_nanos()));
    let seed = u64::from(std::process::id()) ^ nanos ^ call.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    for attempt in 0..200u64 {
        let base = 20_000 + ((seed.wrapping_mul(7919) + attempt * 104_729) % 30_000) as u16;
        let all_free = (0..count).all(|i| TcpListener::bind(("127.0.0.1", base + i)).is_ok());
        if all_free {
            return base;
        }
    }
    panic!("no range of {count} free ports found");
}

/// Whether something accepts connections on 127.0.0.1:`port`. A connection to itself (the
/// kernel may pick the port asked for as the source port while nothing listens there, and
/// TCP's simultaneous open then connects the socket to itself) does not count.
pub fn port_open(port: u16) -> bool {
    TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    )
    .is_ok_and(|stream| stream.local_addr().ok() != stream.peer_addr().ok())
}

/// Standard output, lossily decoded.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Standard error, lossily decoded.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}
