//! The tokio adapter: one packet socket (AF_PACKET) per interface, filtered
//! in the kernel to Router Solicitations and joined to the all-routers MAC
//! group there, feeding a [`Responder`]; answers leave as whole frames built
//! by [`super::frame`]. Nothing here goes through the kernel's IPv6 stack,
//! so it works the same with IPv6 switched off on the interface.
//!
//! Linux only (packet sockets, socket filters); needs CAP_NET_RAW. No crate
//! offers a packet socket with a filter and multicast membership on tokio,
//! hence the libc calls below.

use std::ffi::CString;
use std::io;
use std::mem;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::unix::AsyncFd;
use tokio::task::JoinSet;

use super::counters::{Counters, DropReason};
use super::frame::{self, Mac, ETHERTYPE_IPV6};
use super::policy::LinkPolicy;
use super::responder::{Reply, Responder};
use super::wire;

/// A solicitation frame is 14 + 40 + 8 bytes plus options; anything past
/// this is cut by the kernel (MSG_TRUNC) and dropped as oversized.
const RECEIVE_BUFFER: usize = 2_048;

/// The Ethernet group Router Solicitations are sent to (ff02::2, RFC 2464 §7).
const ALL_ROUTERS_MAC: Mac = [0x33, 0x33, 0, 0, 0, 2];

/// Answers Router Solicitations on `interfaces` until a socket fails for
/// good; see [`serve`] to keep the counters.
///
/// Errors if an interface does not exist or has no Ethernet address, or
/// the process lacks CAP_NET_RAW. The responder only spares booting
/// machines the wait for IPv6 autoconfiguration to time out, so a caller
/// may log the error and carry on serving.
pub async fn run(interfaces: Vec<String>) -> anyhow::Result<()> {
    serve(
        interfaces,
        Arc::new(Counters::default()),
        LinkPolicy::always(),
    )
    .await
}

/// [`run`], counting into `counters` (keep a clone to render metrics),
/// silent on the links `policy` says.
pub async fn serve(
    interfaces: Vec<String>,
    counters: Arc<Counters>,
    policy: LinkPolicy,
) -> anyhow::Result<()> {
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
        tracing::info!(
            %interface,
            ipv6_enabled = ipv6_enabled(&interface),
            "answering IPv6 Router Solicitations (at layer 2)"
        );
        listeners.push(listener);
    }
    let mut tasks = JoinSet::new();
    for listener in listeners {
        tasks.spawn(listener.run(counters.clone(), policy.clone()));
    }
    while let Some(joined) = tasks.join_next().await {
        joined.context("Router Solicitation task failed")??;
    }
    Ok(())
}

/// One interface's socket and state.
struct Listener {
    interface: String,
    mac: Mac,
    socket: AsyncFd<Socket>,
    responder: Responder,
    /// Whether a send failure was already logged as a warning: the next
    /// ones are logged at debug level, as a host retries every few seconds.
    warned: bool,
}

impl Listener {
    fn bind(interface: String) -> anyhow::Result<Listener> {
        let index = interface_index(&interface)?;
        let mac = interface_mac(&interface)?;
        let protocol = i32::from(ETHERTYPE_IPV6.to_be());
        let socket = Socket::new(Domain::PACKET, Type::RAW, Some(Protocol::from(protocol)))
            .context("cannot open a packet socket (needs CAP_NET_RAW)")?;
        // Without the filter the socket would wake for every IPv6 frame on
        // the link; the parser still checks everything, so a failure here
        // costs only wake-ups.
        if let Err(error) = attach_solicitation_filter(&socket) {
            tracing::warn!(%interface, %error, "cannot install the packet filter");
        }
        bind_to_interface(&socket, index).context("cannot bind to the interface")?;
        // Solicitations go to 33:33:00:00:00:02, which a NIC filters out
        // unless someone joined it; the kernel's IPv6 stack joins it only
        // when forwarding is on, and not at all when IPv6 is disabled.
        add_membership(&socket, index, ALL_ROUTERS_MAC).context("cannot join 33:33:00:00:00:02")?;
        socket.set_nonblocking(true)?;
        // SAFETY: a socket2::Socket owns its descriptor: it stays open and
        // as_raw_fd returns it until the Socket, owned by the AsyncFd, drops.
        let socket = unsafe { AsyncFd::register(socket) }
            .map_err(|error| error.into_parts().1)
            .context("cannot register the socket with tokio")?;
        Ok(Listener {
            interface,
            mac,
            socket,
            responder: Responder::new(),
            warned: false,
        })
    }

    async fn run(mut self, counters: Arc<Counters>, policy: LinkPolicy) -> anyhow::Result<()> {
        let mut buffer = vec![0u8; RECEIVE_BUFFER];
        loop {
            let received = match self.receive(&mut buffer).await {
                Ok(received) => received,
                Err(error) if transient(&error) => continue,
                Err(error) => {
                    return Err(error).with_context(|| {
                        format!("receiving on the packet socket of {}", self.interface)
                    })
                }
            };
            let Received::Frame(len) = received else {
                // Our own frames, seen on the way out.
                continue;
            };
            if len > buffer.len() {
                counters.count_received();
                counters.count_drop(DropReason::Oversized);
                continue;
            }
            let inbound = match frame::parse(&buffer[..len]) {
                Ok(inbound) => inbound,
                Err(reason) => {
                    counters.count_received();
                    counters.count_drop(reason);
                    continue;
                }
            };
            if policy.silent_on(&self.interface) {
                counters.count_received();
                counters.count_drop(DropReason::TurnedOff);
                continue;
            }
            match self.responder.handle(
                inbound.message,
                inbound.received,
                Instant::now(),
                &counters,
            ) {
                Some(reply) => {
                    let frame = frame::advertisement(
                        self.mac,
                        inbound.source_mac,
                        reply.destination,
                        reply.message,
                    );
                    self.send(&frame, reply, &counters).await;
                }
                None => tracing::debug!(
                    interface = %self.interface,
                    source = %inbound.received.source,
                    "ICMPv6 message not answered"
                ),
            }
        }
    }

    async fn receive(&self, buffer: &mut [u8]) -> io::Result<Received> {
        loop {
            let mut guard = self.socket.readable().await?;
            match guard.try_io(|socket| receive_frame(socket.get_ref(), buffer)) {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }

    async fn send(&mut self, frame: &[u8], reply: Reply, counters: &Counters) {
        let sent = loop {
            let mut guard = match self.socket.writable().await {
                Ok(guard) => guard,
                Err(error) => break Err(error),
            };
            match guard.try_io(|socket| socket.get_ref().send(frame)) {
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

/// What one receive returned.
enum Received {
    /// A frame from the link, of this length (more than the buffer when cut).
    Frame(usize),
    /// A frame this host sent (packet sockets see those too).
    Outgoing,
}

/// Receive errors worth retrying rather than stopping for.
fn transient(error: &io::Error) -> bool {
    error.kind() == io::ErrorKind::Interrupted
        || matches!(
            error.raw_os_error(),
            Some(libc::ENOBUFS) | Some(libc::ENOMEM) | Some(libc::ENETDOWN)
        )
}

/// Whether the kernel's IPv6 is on for `interface`, for the start-up log:
/// the responder works either way, and saying which helps when reading why
/// a host did or did not autoconfigure.
fn ipv6_enabled(interface: &str) -> bool {
    std::fs::read_to_string(format!("/proc/sys/net/ipv6/conf/{interface}/disable_ipv6"))
        .is_ok_and(|value| value.trim() == "0")
}

/// The kernel's index of `interface`.
fn interface_index(interface: &str) -> anyhow::Result<i32> {
    let name = CString::new(interface).context("interface name has a NUL byte")?;
    // SAFETY: `name` is a NUL-terminated string that outlives the call.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        return Err(io::Error::last_os_error()).context("no such interface");
    }
    i32::try_from(index).context("interface index out of range")
}

/// The interface's Ethernet address, from sysfs.
fn interface_mac(interface: &str) -> anyhow::Result<Mac> {
    let text = std::fs::read_to_string(format!("/sys/class/net/{interface}/address"))
        .context("cannot read the interface's hardware address")?;
    let bytes: Vec<u8> = text
        .trim()
        .split(':')
        .map(|part| u8::from_str_radix(part, 16))
        .collect::<Result<_, _>>()
        .context("the interface's hardware address is not hex")?;
    bytes
        .try_into()
        .ok()
        .filter(|mac: &Mac| *mac != [0; 6])
        .context("the interface has no Ethernet address")
}

fn bind_to_interface(socket: &Socket, index: i32) -> io::Result<()> {
    // SAFETY: sockaddr_ll is plain old data; all-zero is valid.
    let mut address: libc::sockaddr_ll = unsafe { mem::zeroed() };
    address.sll_family = libc::AF_PACKET as u16;
    address.sll_protocol = ETHERTYPE_IPV6.to_be();
    address.sll_ifindex = index;
    // SAFETY: a live sockaddr_ll of the length passed, read during the call.
    let result = unsafe {
        libc::bind(
            socket.as_raw_fd(),
            (&address as *const libc::sockaddr_ll).cast(),
            mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn add_membership(socket: &Socket, index: i32, group: Mac) -> io::Result<()> {
    // SAFETY: packet_mreq is plain old data; all-zero is valid.
    let mut request: libc::packet_mreq = unsafe { mem::zeroed() };
    request.mr_ifindex = index;
    request.mr_type = libc::PACKET_MR_MULTICAST as u16;
    request.mr_alen = 6;
    request.mr_address[..6].copy_from_slice(&group);
    setsockopt(
        socket,
        libc::SOL_PACKET,
        libc::PACKET_ADD_MEMBERSHIP,
        &request,
    )
}

/// A classic BPF program passing IPv6 frames whose next header is ICMPv6
/// (no extension headers) of type 133: `ether proto 0x86dd and ip6[6] = 58
/// and ip6[40] = 133`, as `tcpdump -dd` would write it.
fn attach_solicitation_filter(socket: &Socket) -> io::Result<()> {
    const LOAD_HALF: u16 = (libc::BPF_LD | libc::BPF_H | libc::BPF_ABS) as u16;
    const LOAD_BYTE: u16 = (libc::BPF_LD | libc::BPF_B | libc::BPF_ABS) as u16;
    const JUMP_EQUAL: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
    const RETURN: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
    let op = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    let program = [
        op(LOAD_HALF, 0, 0, 12),
        op(JUMP_EQUAL, 0, 5, u32::from(ETHERTYPE_IPV6)),
        op(LOAD_BYTE, 0, 0, 20),
        op(JUMP_EQUAL, 0, 3, 58),
        op(LOAD_BYTE, 0, 0, frame::ICMPV6_OFFSET as u32),
        op(JUMP_EQUAL, 0, 1, u32::from(wire::ROUTER_SOLICITATION)),
        op(RETURN, 0, 0, RECEIVE_BUFFER as u32 + 1),
        op(RETURN, 0, 0, 0),
    ];
    let filter = libc::sock_fprog {
        len: program.len() as u16,
        filter: program.as_ptr().cast_mut(),
    };
    setsockopt(socket, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &filter)
}

fn setsockopt<T>(socket: &Socket, level: i32, name: i32, value: &T) -> io::Result<()> {
    // SAFETY: `value` is a live T of the length passed, only read during
    // the call (the kernel copies a filter program in).
    let result = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (value as *const T).cast(),
            mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// One `recvfrom`: the frame's real length (MSG_TRUNC) and whether the
/// host itself sent it.
fn receive_frame(socket: &Socket, buffer: &mut [u8]) -> io::Result<Received> {
    // SAFETY: sockaddr_ll is plain old data; all-zero is valid.
    let mut from: libc::sockaddr_ll = unsafe { mem::zeroed() };
    let mut from_len = mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    // SAFETY: `buffer` and `from` are live and writable for the lengths
    // given, for the duration of the call.
    let received = unsafe {
        libc::recvfrom(
            socket.as_raw_fd(),
            buffer.as_mut_ptr().cast(),
            buffer.len(),
            libc::MSG_TRUNC,
            (&mut from as *mut libc::sockaddr_ll).cast(),
            &mut from_len,
        )
    };
    let Ok(len) = usize::try_from(received) else {
        return Err(io::Error::last_os_error());
    };
    if from.sll_pkttype == libc::PACKET_OUTGOING {
        return Ok(Received::Outgoing);
    }
    Ok(Received::Frame(len))
}
