//! Free loopback ports for the processes a test starts.

use std::net::{SocketAddr, TcpListener};

/// A loopback address with a port that was free a moment ago.
pub fn free_loopback() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local address")
}
