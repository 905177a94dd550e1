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
