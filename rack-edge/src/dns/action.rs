//! The engine's inputs about who asked, and its outputs: what the adapter
//! must send, to whom, over what.

use std::net::SocketAddr;

use super::wire::Transport;

/// Who asked, and the path back to them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Client {
    /// The source address of the query.
    pub addr: SocketAddr,
    /// UDP (one listening socket) or TCP.
    pub transport: Transport,
    /// The adapter's handle for the TCP connection the query came on
    /// (echoed back in [`Action::Reply`]; unused for UDP).
    pub connection: u64,
}

impl Client {
    /// A client on the UDP socket.
    pub fn udp(addr: SocketAddr) -> Client {
        Client {
            addr,
            transport: Transport::Udp,
            connection: 0,
        }
    }

    /// A client on TCP connection `connection`.
    pub fn tcp(addr: SocketAddr, connection: u64) -> Client {
        Client {
            addr,
            transport: Transport::Tcp,
            connection,
        }
    }
}

/// One question to an upstream, as the adapter carries it out; every
/// attempt (failover, TCP retry) gets a new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ExchangeId(pub u64);

/// Something the adapter must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send `bytes` to `client`, over the transport it asked on.
    Reply {
        /// Who gets it.
        client: Client,
        /// The DNS message (without TCP length prefix).
        bytes: Vec<u8>,
    },
    /// Ask `server`: over UDP from a fresh socket (a random source port per
    /// query), or over a new TCP connection. Hand every datagram or
    /// message that comes back to `Resolver::handle_answer` with this
    /// exchange until it is settled; report a connection failure with
    /// `Resolver::handle_failure`.
    Query {
        /// The exchange to report back for.
        exchange: ExchangeId,
        /// The upstream resolver.
        server: SocketAddr,
        /// UDP first; TCP when the UDP answer was truncated.
        transport: Transport,
        /// The DNS message (without TCP length prefix).
        bytes: Vec<u8>,
    },
}
