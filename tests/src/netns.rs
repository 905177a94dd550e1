//! Network namespaces and veth pairs for tests that need several hosts on
//! one machine. Names are unique per process and counter (tests run in
//! parallel), and everything is deleted on drop, whatever the outcome.

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn ip(args: &[&str]) {
    let output = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        output.status.success(),
        "ip {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A short name unique to this process and call, usable for interfaces (≤ 15 bytes).
pub fn unique(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}{}{n}", std::process::id() % 100_000)
}

/// A network namespace, deleted on drop.
pub struct Netns {
    /// Its name, for `ip netns exec`.
    pub name: String,
}

impl Netns {
    /// Creates a namespace with its loopback up.
    pub fn create() -> Netns {
        let ns = Netns {
            name: unique("emns"),
        };
        ip(&["netns", "add", &ns.name]);
        ip(&["-n", &ns.name, "link", "set", "lo", "up"]);
        ns
    }

    /// A command that runs `program` inside the namespace.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name]).arg(program);
        command
    }

    /// Switches the kernel's IPv6 off on `interface` inside the namespace,
    /// as operators of IPv4-only site networks often do.
    pub fn disable_ipv6(&self, interface: &str) {
        let status = self
            .command("sysctl")
            .arg("-qw")
            .arg(format!("net.ipv6.conf.{interface}.disable_ipv6=1"))
            .status()
            .expect("sysctl");
        assert!(status.success(), "cannot disable IPv6 on {interface}");
    }

    /// Waits until `interface` has a usable IPv6 link-local address
    /// (duplicate address detection done), to solicit from it.
    pub async fn wait_for_link_local(&self, interface: &str) {
        crate::wait_until("a link-local address", crate::site::PATIENCE, || async {
            let output = self
                .command("ip")
                .args(["-6", "addr", "show", "dev", interface, "scope", "link"])
                .output()
                .ok()?;
            let text = String::from_utf8_lossy(&output.stdout).to_string();
            (text.contains("fe80::") && !text.contains("tentative")).then_some(())
        })
        .await;
    }

    /// Runs `ip ARGS` inside the namespace.
    pub fn ip(&self, args: &[&str]) {
        let mut all = vec!["-n", &self.name];
        all.extend_from_slice(args);
        ip(&all);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the namespace also deletes the veth ends inside it.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// Joins two namespaces with a veth pair; returns the two interface names.
/// `address_a` (CIDR) is set on the first end; both ends are brought up.
pub fn veth(a: &Netns, b: &Netns, address_a: Option<&str>) -> (String, String) {
    let (name_a, name_b) = (unique("ema"), unique("emb"));
    ip(&[
        "link", "add", &name_a, "type", "veth", "peer", "name", &name_b,
    ]);
    ip(&["link", "set", &name_a, "netns", &a.name]);
    ip(&["link", "set", &name_b, "netns", &b.name]);
    if let Some(address) = address_a {
        a.ip(&["addr", "add", address, "dev", &name_a]);
    }
    a.ip(&["link", "set", &name_a, "up"]);
    b.ip(&["link", "set", &name_b, "up"]);
    (name_a, name_b)
}

/// Creates a bridge inside `ns` and brings it up; returns its name.
pub fn bridge(ns: &Netns) -> String {
    let name = unique("embr");
    ns.ip(&["link", "add", &name, "type", "bridge"]);
    ns.ip(&["link", "set", &name, "up"]);
    name
}

/// Plugs `host` into the bridge `bridge` of `switch` with a veth pair whose
/// host end gets `mac` and (if given) `address`; returns the host end's name.
pub fn plug(
    switch: &Netns,
    bridge: &str,
    host: &Netns,
    mac: &str,
    address: Option<&str>,
) -> String {
    let (port, nic) = veth(switch, host, None);
    switch.ip(&["link", "set", &port, "master", bridge]);
    host.ip(&["link", "set", &nic, "down"]);
    host.ip(&["link", "set", &nic, "address", mac]);
    if let Some(address) = address {
        host.ip(&["addr", "add", address, "dev", &nic]);
    }
    host.ip(&["link", "set", &nic, "up"]);
    nic
}

/// Runs `work` on a thread that has entered `ns`: sockets it creates live in
/// the namespace (and stay there whichever thread uses them later).
pub fn run_in<T: Send + 'static>(ns: &Netns, work: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/var/run/netns/{}", ns.name);
    std::thread::spawn(move || {
        enter(&path);
        work()
    })
    .join()
    .expect("namespace thread panicked")
}

fn enter(path: &str) {
    use std::os::fd::AsRawFd;
    let file = std::fs::File::open(path).expect("open the namespace");
    // SAFETY: setns on a valid namespace fd changes only this thread's namespace.
    let entered = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(
        entered,
        0,
        "setns {path}: {}",
        std::io::Error::last_os_error()
    );
}

/// Makes the host's `127.0.0.1:port` reachable at `127.0.0.1:port` inside
/// `ns` (e.g. the region's broker for a rack in a namespace). Connections
/// are relayed by threads of this process until it exits.
pub fn forward_loopback_port(ns: &Netns, port: u16) {
    let listener = run_in(ns, move || {
        std::net::TcpListener::bind(("127.0.0.1", port)).expect("bind inside the namespace")
    });
    std::thread::spawn(move || {
        for inbound in listener.incoming().flatten() {
            let Ok(outbound) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
                continue;
            };
            let pairs = [
                (inbound.try_clone(), outbound.try_clone()),
                (outbound.try_clone(), inbound.try_clone()),
            ];
            for (from, to) in pairs {
                if let (Ok(mut from), Ok(mut to)) = (from, to) {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Write);
                    });
                }
            }
        }
    });
}

/// A rack's namespace and a virtual machine's, joined: the rack end gets
/// `rack_address` (CIDR); in the machine's namespace a tap (for QEMU's
/// `-netdev tap,ifname=…`) is bridged to the other end.
pub struct MachineSite {
    /// Where the rack runs.
    pub rack: Netns,
    /// Where QEMU runs.
    pub machine: Netns,
    /// The rack's interface towards the machine.
    pub rack_if: String,
    /// The veth end in the machine's namespace (a bridge port: sniff here).
    pub machine_if: String,
    /// The tap QEMU attaches to.
    pub tap: String,
    /// The bridge in the machine's namespace, for more taps.
    pub bridge: String,
}

impl MachineSite {
    /// Builds the two namespaces and the links.
    pub fn create(rack_address: &str) -> MachineSite {
        let rack = Netns::create();
        let machine = Netns::create();
        let (rack_if, machine_if) = veth(&rack, &machine, Some(rack_address));
        let tap = unique("emt");
        let bridge = unique("embr");
        machine.ip(&["tuntap", "add", "dev", &tap, "mode", "tap"]);
        machine.ip(&["link", "add", &bridge, "type", "bridge"]);
        machine.ip(&["link", "set", &tap, "master", &bridge]);
        machine.ip(&["link", "set", &machine_if, "master", &bridge]);
        for link in [&tap, &bridge] {
            machine.ip(&["link", "set", link, "up"]);
        }
        MachineSite {
            rack,
            machine,
            rack_if,
            machine_if,
            tap,
            bridge,
        }
    }

    /// Another tap on the machines' bridge, for a second machine.
    pub fn add_tap(&self) -> String {
        let tap = unique("emt");
        self.machine
            .ip(&["tuntap", "add", "dev", &tap, "mode", "tap"]);
        self.machine
            .ip(&["link", "set", &tap, "master", &self.bridge]);
        self.machine.ip(&["link", "set", &tap, "up"]);
        tap
    }
}

/// A TCP relay that listens inside a namespace and connects to a port on
/// the host's loopback; it stops listening when dropped.
pub struct PortForward {
    listener: std::os::fd::RawFd,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Makes the host's `127.0.0.1:port` reachable at `listen` inside `ns`
/// (e.g. a tap's address, for a virtual machine on that tap). Unlike
/// [`forward_loopback_port`], the listener closes on drop.
pub fn forward_port(ns: &Netns, listen: std::net::SocketAddr, port: u16) -> PortForward {
    use std::os::fd::AsRawFd;
    let listener = run_in(ns, move || {
        std::net::TcpListener::bind(listen).expect("bind inside the namespace")
    });
    let fd = listener.as_raw_fd();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopped = stop.clone();
    let thread = std::thread::spawn(move || {
        for inbound in listener.incoming() {
            if stopped.load(Ordering::Relaxed) {
                return;
            }
            let Ok(inbound) = inbound else { continue };
            let Ok(outbound) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
                continue;
            };
            let pairs = [
                (inbound.try_clone(), outbound.try_clone()),
                (outbound.try_clone(), inbound.try_clone()),
            ];
            for (from, to) in pairs {
                if let (Ok(mut from), Ok(mut to)) = (from, to) {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        }
    });
    PortForward {
        listener: fd,
        stop,
        thread: Some(thread),
    }
}

impl Drop for PortForward {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // SAFETY: shutdown(2) on the listener the relay thread still owns
        // (it returns only after seeing the flag); it wakes the blocked accept.
        unsafe {
            libc::shutdown(self.listener, libc::SHUT_RDWR);
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
