//! What the end-to-end suites of a machine's life (commissioning, deploy)
//! read back: its events in order, its status reached, the rack's cache
//! ready, and the tail of a log or console for failure messages.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::netns::MachineSite;
use crate::vm_bmc::VmBmc;
use crate::ApiClient;

/// A machine's events, oldest first, as (kind, detail, at_ms).
pub async fn events(api: &ApiClient, id: &str) -> Vec<(String, String, i64)> {
    let listed = api.get(&format!("/api/v1/machines/{id}/events")).await;
    let mut events: Vec<(String, String, i64)> = listed
        .as_array()
        .expect("events are a list")
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap_or_default().to_string(),
                e["detail"].as_str().unwrap_or_default().to_string(),
                e["at_ms"].as_i64().unwrap_or_default(),
            )
        })
        .collect();
    events.reverse();
    events
}

/// The last `lines` lines of a file (a log, a serial console: firmware
/// writes bytes that are not UTF-8 there), for failure messages.
pub fn tail(path: &Path, lines: usize) -> String {
    let text = read_lossy(path);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The first finished line (one its writer has ended with a newline) of a
/// file that contains `needle`. A console file is read while the guest still
/// writes it, so the last line may be cut mid-way.
pub fn finished_line_containing(path: &Path, needle: &str) -> Option<String> {
    read_lossy(path)
        .split_inclusive('\n')
        .filter(|line| line.ends_with('\n'))
        .find(|line| line.contains(needle))
        .map(|line| line.trim_end().to_string())
}

/// A file's text, with bytes that are not UTF-8 replaced; empty if absent.
pub fn read_lossy(path: &Path) -> String {
    String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned()
}

/// Waits until the machine's status is `status` and returns the machine.
/// Fails, with its events and the end of its serial console, when the time
/// runs out or it lands in a failed status it was not waited for.
pub async fn wait_for_status(
    api: &ApiClient,
    id: &str,
    status: &str,
    serial: &Path,
    patience: Duration,
) -> Value {
    let deadline = Instant::now() + patience;
    loop {
        let machine = api.get(&format!("/api/v1/machines/{id}")).await;
        if machine["status"] == status {
            return machine;
        }
        let failed = machine["status"]
            .as_str()
            .is_some_and(|s| s.starts_with("failed"));
        if failed || Instant::now() > deadline {
            panic!(
                "machine {id} did not reach {status}: it is {}\nevents: {:#?}\nserial:\n{}",
                machine["status"],
                events(api, id).await,
                tail(serial, 60)
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Positions in `events` of `flow`'s kinds, each after the one before.
pub fn positions(events: &[(String, String, i64)], flow: &[&str]) -> Result<Vec<usize>, String> {
    let mut found = Vec::new();
    let mut from = 0;
    for step in flow {
        let at = events[from..]
            .iter()
            .position(|(kind, _, _)| kind == step)
            .ok_or_else(|| format!("no {step} after event {from}"))?;
        found.push(from + at);
        from += at + 1;
    }
    Ok(found)
}

/// Waits until the site's rack holds `count` boot resources, all verified
/// (its status page, port 5250 in its namespace).
pub async fn wait_for_cached(
    site: &MachineSite,
    rack_log: &Path,
    count: usize,
    patience: Duration,
) {
    let deadline = Instant::now() + patience;
    loop {
        let output = site
            .rack
            .command("curl")
            .args(["-sf", "http://127.0.0.1:5250/status"])
            .output()
            .expect("curl");
        let status: Value = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
        let ready = status["boot_resources"]
            .as_array()
            .is_some_and(|r| r.len() == count && r.iter().all(|r| r["ready"] == true));
        if ready {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the rack did not cache its boot resources: {status}\n{}",
            tail(rack_log, 20)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until the machine's QEMU is gone (powered off).
pub async fn wait_for_off(vm: &VmBmc, patience: Duration) {
    let deadline = Instant::now() + patience;
    while vm.qemu_running() {
        assert!(Instant::now() < deadline, "the machine did not power off");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Waits until `needle` appears in the log at `path`.
pub async fn wait_for_log(path: &Path, needle: &str, patience: Duration) {
    let deadline = Instant::now() + patience;
    loop {
        if std::fs::read_to_string(path)
            .unwrap_or_default()
            .contains(needle)
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{needle:?} never appeared in {}:\n{}",
            path.display(),
            tail(path, 30)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
