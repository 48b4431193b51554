//! Ports for the stack's servers, chosen before the processes that bind
//! them start.

use std::net::{SocketAddr, TcpListener};

use anyhow::{bail, Result};

/// A port on 127.0.0.1 that was free a moment ago, for a server started
/// later by another process.
///
/// It is taken below the kernel's ephemeral range where there is room, so
/// that between now and the server's bind no other `bind(0)` and no outgoing
/// connection is handed the same port (a client retrying a connection to a
/// port nobody listens on yet can otherwise connect to itself).
///
/// No port is handed out twice by one process, so that stacks started at
/// the same time (tests) never pick the same one before either binds it.
pub fn free_port() -> Result<SocketAddr> {
    use std::hash::{BuildHasher, Hasher};
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let range = below_ephemeral();
    for _ in 0..64 {
        let addr = match range {
            Some((low, high)) => {
                let mut h = std::collections::hash_map::RandomState::new().build_hasher();
                h.write_u8(0);
                let port = low + (h.finish() % u64::from(high - low)) as u16;
                match TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, port)) {
                    Ok(l) => l.local_addr()?,
                    Err(_) => continue,
                }
            }
            None => TcpListener::bind("127.0.0.1:0")?.local_addr()?,
        };
        if !given.contains(&addr.port()) {
            given.push(addr.port());
            return Ok(addr);
        }
    }
    bail!("no free port on 127.0.0.1 after 64 tries")
}

/// Ports `[low, high)` under the ephemeral range (Linux), if at least 1,000.
fn below_ephemeral() -> Option<(u16, u16)> {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let first: u16 = range.split_whitespace().next()?.parse().ok()?;
    let low = first.saturating_sub(12_000).max(10_000);
    (first >= low + 1_000).then_some((low, first))
}
