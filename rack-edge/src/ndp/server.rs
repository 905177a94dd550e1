//! The tokio adapter: one raw ICMPv6 socket per interface, bound to the
//! device and joined to the all-routers group there, feeding a
//! [`Responder`]. Everything about what to answer is in [`super::responder`].
//!
//! Linux only (SO_BINDTODEVICE, the ICMPv6 filter); needs CAP_NET_RAW.

use std::ffi::CString;
use std::io;
use std::mem;
use std::net::{Ipv6Addr, SocketAddrV6};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tokio::io::unix::AsyncFd;
use tokio::task::JoinSet;

use super::counters::{Counters, DropReason};
use super::responder::{Received, Reply, Responder};
use super::wire;

/// Solicitations are 8 bytes plus a 8-byte link-layer option; anything
/// past this is cut by the kernel (MSG_TRUNC) and dropped as oversized.
const RECEIVE_BUFFER: usize = 2_048;

/// Room for the hop-limit control message (CMSG_SPACE(4) is 24 bytes on
/// 64-bit Linux) with margin; u64 words for cmsghdr alignment.
const CONTROL_WORDS: usize = 8;

/// `ICMP6_FILTER` from <netinet/icmp6.h>: the libc crate does not define it.
const ICMP6_FILTER: libc::c_int = 1;

/// Answers Router Solicitations on `interfaces` until a socket fails for
/// good; see [`serve`] to keep the counters.
///
/// Errors if an interface does not exist, IPv6 is disabled, or the process
/// lacks CAP_NET_RAW. The responder only spares booting machines the wait
/// for IPv6 autoconfiguration to time out, so a caller may log the error
/// and carry on serving.
pub async fn run(interfaces: Vec<String>) -> anyhow::Result<()> {
    serve(interfaces, Arc::new(Counters::default())).await
}

/// [`run`], counting into `counters` (keep a clone to render metrics).
pub async fn serve(interfaces: Vec<String>, counters: Arc<Counters>) -> anyhow::Result<()> {
    anyhow::ensure!(
        !interfaces.is_empty(),
        "no interface to answer Router Solicitations on"
    );
    // Bind every socket before serving any, so a bad interface name fails
    // at start-up rather than later in a task.
    let mut listeners = Vec::with_capacity(interfaces.len());
    for interface in interfaces {
        let listener = Listener::bind(interface.clone())
            .with_context(|| format!("cannot answer Router Solicitations on {interface}"))?;
        tracing::info!(%interface, "answering IPv6 Router Solicitations");
        listeners.push(listener);
    }
    let mut tasks = JoinSet::new();
    for listener in listeners {
        tasks.spawn(listener.run(counters.clone()));
    }
    while let Some(joined) = tasks.join_next().await {
        joined.context("Router Solicitation task failed")??;
    }
    Ok(())
}

/// One interface's socket and state.
struct Listener {
    interface: String,
    index: u32,
    socket: AsyncFd<Socket>,
    responder: Responder,
    /// Whether a send failure was already logged as a warning: the next
    /// ones are logged at debug level, as a host retries every few seconds.
    warned: bool,
}

impl Listener {
    fn bind(interface: String) -> anyhow::Result<Listener> {
        let index = interface_index(&interface)?;
        let socket = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6))
            .context("cannot open a raw ICMPv6 socket (needs CAP_NET_RAW and IPv6)")?;
        socket
            .bind_device(Some(interface.as_bytes()))
            .context("cannot bind to the device")?;
        // Without the filter the socket would see every ICMPv6 message on
        // the link (neighbour discovery, echo...); the responder still
        // checks the type, so a failure here costs only wake-ups.
        if let Err(error) = pass_only_router_solicitations(&socket) {
            tracing::warn!(%interface, %error, "cannot install the ICMPv6 filter");
        }
        socket
            .set_recv_hoplimit_v6(true)
            .context("cannot ask for the hop limit of received messages")?;
        // RFC 4861 §6.1.2: receivers drop Router Advertisements with any
        // other hop limit.
        socket.set_unicast_hops_v6(u32::from(wire::HOP_LIMIT))?;
        socket.set_multicast_hops_v6(u32::from(wire::HOP_LIMIT))?;
        socket.set_multicast_if_v6(index)?;
        socket.set_multicast_loop_v6(false)?;
        // Solicitations go to ff02::2, which the kernel joins only when
        // forwarding is on; without joining, the NIC and the IPv6 layer
        // would drop them.
        socket
            .join_multicast_v6(&wire::ALL_ROUTERS, index)
            .context("cannot join ff02::2")?;
        socket.set_nonblocking(true)?;
        // SAFETY: a socket2::Socket owns its descriptor: it stays open and
        // as_raw_fd returns it until the Socket, owned by the AsyncFd, drops.
        let socket = unsafe { AsyncFd::register(socket) }
            .map_err(|error| error.into_parts().1)
            .context("cannot register the socket with tokio")?;
        Ok(Listener {
            interface,
            index,
            socket,
            responder: Responder::new(),
            warned: false,
        })
    }

    async fn run(mut self, counters: Arc<Counters>) -> anyhow::Result<()> {
        let mut buffer = vec![0u8; RECEIVE_BUFFER];
        loop {
            let datagram = match self.receive(&mut buffer).await {
                Ok(datagram) => datagram,
                Err(error) if transient(&error) => continue,
                Err(error) => {
                    return Err(error).with_context(|| {
                        format!("receiving on the ICMPv6 socket of {}", self.interface)
                    })
                }
            };
            if datagram.truncated {
                counters.count_received();
                counters.count_drop(DropReason::Oversized);
                continue;
            }
            let received = Received {
                source: *datagram.source.ip(),
                hop_limit: datagram.hop_limit,
            };
            let message = &buffer[..datagram.len];
            match self
                .responder
                .handle(message, received, Instant::now(), &counters)
            {
                Some(reply) => self.send(reply, &counters).await,
                None => tracing::debug!(
                    interface = %self.interface,
                    source = %received.source,
                    "ICMPv6 message not answered"
                ),
            }
        }
    }

    async fn receive(&self, buffer: &mut [u8]) -> io::Result<Datagram> {
        loop {
            let mut guard = self.socket.readable().await?;
            match guard.try_io(|socket| receive_with_hop_limit(socket.get_ref(), buffer)) {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }

    async fn send(&mut self, reply: Reply, counters: &Counters) {
        // The scope ID picks the interface for link-local and multicast
        // destinations; the kernel picks the link-local source address.
        let to = SockAddr::from(SocketAddrV6::new(reply.destination, 0, 0, self.index));
        let sent = loop {
            let mut guard = match self.socket.writable().await {
                Ok(guard) => guard,
                Err(error) => break Err(error),
            };
            match guard.try_io(|socket| socket.get_ref().send_to(&reply.message, &to)) {
                Ok(result) => break result,
                Err(_would_block) => continue,
            }
        };
        match sent {
            Ok(_) => {
                counters.count_sent();
                tracing::debug!(
                    interface = %self.interface,
                    destination = %reply.destination,
                    "Router Advertisement sent"
                );
            }
            Err(error) => {
                counters.count_send_failed();
                // EADDRNOTAVAIL while the link-local address is tentative,
                // EHOSTUNREACH if the host does not answer neighbour
                // discovery: the host solicits again.
                if self.warned {
                    tracing::debug!(interface = %self.interface, destination = %reply.destination, %error, "cannot send Router Advertisement");
                } else {
                    self.warned = true;
                    tracing::warn!(interface = %self.interface, destination = %reply.destination, %error, "cannot send Router Advertisement");
                }
            }
        }
    }
}

/// Receive errors worth retrying rather than stopping for.
fn transient(error: &io::Error) -> bool {
    error.kind() == io::ErrorKind::Interrupted
        || matches!(
            error.raw_os_error(),
            Some(libc::ENOBUFS) | Some(libc::ENOMEM)
        )
}

/// The kernel's index of `interface`, needed for the multicast membership
/// and the destination scope.
fn interface_index(interface: &str) -> anyhow::Result<u32> {
    let name = CString::new(interface).context("interface name has a NUL byte")?;
    // SAFETY: `name` is a NUL-terminated string that outlives the call.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        return Err(io::Error::last_os_error()).context("no such interface");
    }
    Ok(index)
}

/// Sets the socket's ICMPv6 type filter (RFC 3542 §3.2) to pass Router
/// Solicitations only. On Linux a set bit blocks the type.
fn pass_only_router_solicitations(socket: &Socket) -> io::Result<()> {
    let mut filter = [u32::MAX; 8];
    let kind = usize::from(wire::ROUTER_SOLICITATION);
    filter[kind / 32] &= !(1u32 << (kind % 32));
    // SAFETY: `filter` is a live struct icmp6_filter (8 x u32) of the
    // length passed, only read during the call.
    let result = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_ICMPV6,
            ICMP6_FILTER,
            filter.as_ptr().cast(),
            mem::size_of_val(&filter) as libc::socklen_t,
        )
    };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// One message as received.
struct Datagram {
    len: usize,
    source: SocketAddrV6,
    hop_limit: Option<u8>,
    /// Longer than the buffer (MSG_TRUNC).
    truncated: bool,
}

/// `recvmsg` with the IPV6_HOPLIMIT control message. socket2's `recvmsg`
/// wants uninitialised buffers and still leaves the control messages to
/// walk with libc's CMSG macros, so this calls libc directly.
fn receive_with_hop_limit(socket: &Socket, buffer: &mut [u8]) -> io::Result<Datagram> {
    // SAFETY: sockaddr_in6 and msghdr are plain C structs; all-zero is valid.
    let mut name: libc::sockaddr_in6 = unsafe { mem::zeroed() };
    let mut control = [0u64; CONTROL_WORDS];
    let mut iov = libc::iovec {
        iov_base: buffer.as_mut_ptr().cast(),
        iov_len: buffer.len(),
    };
    // SAFETY: as above.
    let mut msg: libc::msghdr = unsafe { mem::zeroed() };
    msg.msg_name = (&mut name as *mut libc::sockaddr_in6).cast();
    msg.msg_namelen = mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = mem::size_of_val(&control) as _;
    // SAFETY: every pointer in `msg` points at a live, writable buffer of
    // the length given next to it, for the duration of the call.
    let received = unsafe { libc::recvmsg(socket.as_raw_fd(), &mut msg, 0) };
    let Ok(received) = usize::try_from(received) else {
        return Err(io::Error::last_os_error());
    };
    let mut hop_limit = None;
    // SAFETY: `msg` describes `control`, which the kernel filled up to
    // msg_controllen; CMSG_FIRSTHDR and CMSG_NXTHDR return null rather than
    // a header not wholly inside it.
    let mut header = unsafe { libc::CMSG_FIRSTHDR(&msg) };
    while !header.is_null() {
        // SAFETY: non-null headers from the CMSG macros lie inside `control`.
        let cmsg = unsafe { &*header };
        // SAFETY: CMSG_LEN only computes a size.
        let needed = unsafe { libc::CMSG_LEN(mem::size_of::<libc::c_int>() as libc::c_uint) };
        if cmsg.cmsg_level == libc::IPPROTO_IPV6
            && cmsg.cmsg_type == libc::IPV6_HOPLIMIT
            && cmsg.cmsg_len as u64 >= u64::from(needed)
        {
            // SAFETY: the header's length covers a c_int of data, which
            // may not be aligned for a c_int.
            let value: libc::c_int =
                unsafe { std::ptr::read_unaligned(libc::CMSG_DATA(header).cast()) };
            hop_limit = u8::try_from(value).ok();
        }
        // SAFETY: as for CMSG_FIRSTHDR.
        header = unsafe { libc::CMSG_NXTHDR(&msg, header) };
    }
    Ok(Datagram {
        len: received.min(buffer.len()),
        source: SocketAddrV6::new(
            Ipv6Addr::from(name.sin6_addr.s6_addr),
            0,
            0,
            name.sin6_scope_id,
        ),
        hop_limit,
        truncated: msg.msg_flags & libc::MSG_TRUNC != 0,
    })
}
