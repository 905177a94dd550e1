//! Teaching the kernel a client's hardware address before unicasting to it.
//!
//! A client without an address that did not set the broadcast flag expects
//! its reply unicast to the address being offered, at its hardware address.
//! The kernel would ARP for that address first, and the client cannot answer
//! yet. Production servers (ISC dhcpd, dnsmasq) either write raw frames or
//! insert the ARP entry themselves (SIOCSARP); we do the latter. No crate
//! wraps SIOCSARP, hence this small piece of unsafe code.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;

use edgemetal_protocol::MacAddress;

/// Adds (or replaces) a complete ARP entry `ip → mac` on `interface`.
pub fn set_entry(
    socket: &impl AsRawFd,
    interface: &str,
    ip: Ipv4Addr,
    mac: MacAddress,
) -> io::Result<()> {
    if interface.len() >= libc::IFNAMSIZ {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "interface name too long",
        ));
    }
    // SAFETY: arpreq is plain old data; all-zero is a valid value.
    let mut request: libc::arpreq = unsafe { std::mem::zeroed() };

    let protocol = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: sockaddr_in fits in sockaddr (both 16 bytes on Linux).
    request.arp_pa = unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(protocol) };
    request.arp_ha.sa_family = libc::ARPHRD_ETHER;
    for (slot, byte) in request.arp_ha.sa_data.iter_mut().zip(mac.0) {
        *slot = byte as libc::c_char;
    }
    request.arp_flags = libc::ATF_COM;
    for (slot, byte) in request.arp_dev.iter_mut().zip(interface.bytes()) {
        *slot = byte as libc::c_char;
    }
    // SAFETY: a valid socket descriptor and a fully initialised arpreq.
    let result = unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCSARP, &request) };
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}
