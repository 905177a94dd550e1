//! Shared set-ups for DHCP tests and benchmarks: an enrolled rack whose
//! persisted snapshot holds one subnet, started inside a namespace, and
//! client hooks that record what a DHCP client was given.

use std::path::{Path, PathBuf};
use std::process::Child;

use serde_json::json;

use crate::netns::Netns;
use crate::process::binary;
use crate::site::wait_in_sync;
use crate::{RackProcess, RegionOptions, RegionProcess};

/// A rack process inside a namespace, killed on drop.
pub struct NamespacedRack(pub Child);

impl Drop for NamespacedRack {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A child process killed on drop (a relay, a daemon).
pub struct Guard(pub Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Prepares a rack state dir holding an applied snapshot with one subnet
/// (`prefix.0/24`, range .100–.150, gateway and DNS .1), then stops region and rack.
pub async fn enrolled_rack_with_subnet(data: &Path, logs: &Path, prefix: &str) -> PathBuf {
    enrolled_rack_with(
        data,
        logs,
        &format!("{prefix}.0/24"),
        &format!("{prefix}.1"),
        &format!("{prefix}.100"),
        &format!("{prefix}.150"),
    )
    .await
}

/// Like [`enrolled_rack_with_subnet`] for any subnet, gateway and dynamic range.
pub async fn enrolled_rack_with(
    data: &Path,
    logs: &Path,
    cidr: &str,
    gateway: &str,
    start: &str,
    end: &str,
) -> PathBuf {
    enrolled_rack_keeping_region(data, logs, cidr, gateway, start, end)
        .await
        .0
}

/// Like [`enrolled_rack_with`], also returning how the region was started,
/// to start it again on the same data and broker port.
pub async fn enrolled_rack_keeping_region(
    data: &Path,
    logs: &Path,
    cidr: &str,
    gateway: &str,
    start: &str,
    end: &str,
) -> (PathBuf, RegionOptions) {
    enrolled_rack_with_subnet_settings(data, logs, cidr, gateway, start, end, json!({})).await
}

/// Like [`enrolled_rack_keeping_region`], with `extra` subnet settings
/// (boot table, Router Advertisements, …) merged into the subnet's.
pub async fn enrolled_rack_with_subnet_settings(
    data: &Path,
    logs: &Path,
    cidr: &str,
    gateway: &str,
    start: &str,
    end: &str,
    extra: serde_json::Value,
) -> (PathBuf, RegionOptions) {
    let options = RegionOptions::embedded(&data.join("region"), logs);
    let region = RegionProcess::start(&options).await;
    let api = region.client();
    let state = data.join("rack");
    region.enrol_rack("dhcp-rack", &state).await;
    let rack = RackProcess::start(&state, &logs.join("rack-enrol.log")).await;
    let mut spec = json!({"name": "dhcp-site", "cidr": cidr, "gateway": gateway,
                          "dns_servers": [gateway], "domain": "site.internal", "lease_time_secs": 600});
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        spec.extend(extra.clone());
    }
    let subnet = api.create("/api/v1/subnets", spec).await;
    let id = subnet["id"].as_str().unwrap();
    api.create(
        &format!("/api/v1/subnets/{id}/ranges"),
        json!({"start": start, "end": end, "purpose": "dynamic"}),
    )
    .await;
    wait_in_sync(&api, "dhcp-rack").await;
    rack.kill();
    region.kill();
    (state, options)
}

/// A udhcpc hook that records what the client was given, one line per event.
pub fn udhcpc_script(dir: &Path) -> (PathBuf, PathBuf) {
    let out = dir.join("udhcpc-events.txt");
    let script = dir.join("udhcpc-hook.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n\
             echo \"$1 ip=$ip mask=$mask router=$router dns=$dns domain=$domain lease=$lease serverid=$serverid hostname=$hostname bootfile=$bootfile siaddr=$siaddr\" >> {}\n\
             case $1 in\n\
               deconfig) ip addr flush dev $interface ;;\n\
               bound|renew) ip addr flush dev $interface; ip addr add $ip/$mask dev $interface ;;\n\
             esac\n",
            out.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    (script, out)
}

/// The value of `name=` in a hook's event line.
pub fn field<'a>(line: &'a str, name: &str) -> &'a str {
    line.split_whitespace()
        .find_map(|part| part.strip_prefix(&format!("{name}=")))
        .unwrap_or("")
}

/// Starts the rack from `state` inside `ns`, serving DHCP on `interface`.
pub fn start_rack_in(ns: &Netns, state: &Path, interface: &str, log: &Path) -> NamespacedRack {
    start_rack_in_with(ns, state, interface, log, &[])
}

/// Like [`start_rack_in`], with extra environment (e.g. `EDGEMETAL_LOG`).
pub fn start_rack_in_with(
    ns: &Netns,
    state: &Path,
    interface: &str,
    log: &Path,
    env: &[(&str, &str)],
) -> NamespacedRack {
    let log = std::fs::File::create(log).unwrap();
    NamespacedRack(
        ns.command(binary("edgemetal-rack"))
            .envs(env.iter().copied())
            .arg("run")
            .arg("--state-dir")
            .arg(state)
            .args([
                "--status-listen",
                "127.0.0.1:5250",
                "--dhcp-interface",
                interface,
            ])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    )
}

/// The `/metrics` of the rack started by [`start_rack_in_with`] in `ns`.
pub fn rack_metrics_in(ns: &Netns) -> String {
    let output = ns
        .command("curl")
        .args([
            "-sS",
            "--fail",
            "--max-time",
            "10",
            "http://127.0.0.1:5250/metrics",
        ])
        .output()
        .expect("curl");
    assert!(output.status.success(), "rack metrics: {output:?}");
    String::from_utf8(output.stdout).unwrap()
}

/// Runs busybox udhcpc once in `ns` on `interface` with the hook `script`:
/// it retries (20 times, 1 s apart) until a server answers, then exits.
pub fn udhcpc(ns: &Netns, interface: &str, script: &Path, extra: &[&str]) -> std::process::Output {
    ns.command("udhcpc")
        .args([
            "-f", "-q", "-n", "-t", "20", "-T", "1", "-i", interface, "-s",
        ])
        .arg(script)
        .args(extra)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("udhcpc (package udhcpc)")
}
