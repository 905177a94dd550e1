//! Packet captures with tcpdump, for assertions on what went over a link
//! (every Router Solicitation answered, the time from a DHCP ACK to the
//! script fetch) rather than on what a daemon says it did.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

use crate::netns::Netns;

/// A running tcpdump writing a pcap file; stopped (and read) with
/// [`Capture::finish`], killed on drop.
pub struct Capture {
    child: Option<Child>,
    file: PathBuf,
}

impl Capture {
    /// Starts capturing `filter` on `interface` inside `ns` into `file`, and
    /// returns once tcpdump is listening (it says so on stderr).
    pub fn start(ns: &Netns, interface: &str, filter: &str, file: &Path) -> Capture {
        crate::packages::ensure("/usr/bin/tcpdump", "tcpdump");
        let mut child = ns
            .command("tcpdump")
            // -Z root: tcpdump otherwise drops to its own user before it
            // opens the file, which then cannot be in a root-only directory.
            // --immediate-mode: packets reach the file as they come, not in
            // ring blocks that a stop would leave unread.
            .args([
                "-i",
                interface,
                "-n",
                "-U",
                "--immediate-mode",
                "-Z",
                "root",
                "-w",
            ])
            .arg(file)
            .arg(filter)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("tcpdump");
        let stderr = child.stderr.take().expect("piped stderr");
        let mut lines = BufReader::new(stderr).lines();
        loop {
            match lines.next() {
                Some(Ok(line)) if line.contains("listening on") => break,
                Some(Ok(_)) => {}
                _ => panic!("tcpdump on {interface} did not start"),
            }
        }
        // Keep draining stderr so tcpdump never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Capture {
            child: Some(child),
            file: file.to_path_buf(),
        }
    }

    /// Stops the capture and returns its packets as `tcpdump -r -n -tt`
    /// prints them: one line each, starting with the Unix time.
    pub fn finish(mut self) -> Vec<String> {
        if let Some(mut child) = self.child.take() {
            // SIGINT: tcpdump flushes and closes the file.
            let _ = std::process::Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
        let output = std::process::Command::new("tcpdump")
            .args(["-r"])
            .arg(&self.file)
            .args(["-n", "-tt"])
            .output()
            .expect("tcpdump -r");
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The time stamp (seconds) a `tcpdump -tt` line starts with.
pub fn time_of(line: &str) -> Option<f64> {
    line.split_whitespace().next()?.parse().ok()
}
