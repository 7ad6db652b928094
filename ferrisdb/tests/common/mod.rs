//! Helpers shared by the `ferrisdb` binary's integration tests: the binary's path, free
//! loopback ports and the text of a finished command's output.

#![allow(dead_code)]

pub mod cluster_up;

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Output;
use std::time::{Duration, Instant};

/// The `ferrisdb` binary under test.
pub fn ferrisdb_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ferrisdb"))
}

/// A base port with `count` consecutive ports free on 127.0.0.1 a moment ago.
pub fn free_port_range(count: u16) -> u16 {
    let seed = u64::from(std::process::id()) ^ Instant::now().elapsed().as_nanos() as u64;
    for attempt in 0..200u64 {
        let base = 20_000 + ((seed.wrapping_mul(7919) + attempt * 104_729) % 30_000) as u16;
        let all_free = (0..count).all(|i| TcpListener::bind(("127.0.0.1", base + i)).is_ok());
        if all_free {
            return base;
        }
    }
    panic!("no range of {count} free ports found");
}

/// Whether something accepts connections on 127.0.0.1:`port`.
pub fn port_open(port: u16) -> bool {
    TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    )
    .is_ok()
}

/// Standard output, lossily decoded.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Standard error, lossily decoded.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}
