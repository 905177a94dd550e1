//! The deploy bench's helpers: the operator's SSH key pair, and the deploy's
//! time by phase from the machine's events (`hil/deploy.sh` prints it).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::machine_flow::events;
use crate::ApiClient;

/// An ed25519 key pair in `dir`: (private key path, public key line).
pub fn ssh_key(dir: &Path) -> (PathBuf, String) {
    let key = dir.join("id_ed25519");
    let status = Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "operator@bench",
            "-f",
        ])
        .arg(&key)
        .status()
        .expect("ssh-keygen (openssh-client)");
    assert!(status.success());
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    (key, public.trim().to_string())
}

/// Prints (and writes to phases.txt) the deploy's time by phase, from the
/// machine's events: each phase ends at the first event of its kind after
/// the one before. With the region away, the rack's events are stamped when
/// the region stores them, so the phases after the outage are not timings.
pub async fn report_phases(api: &ApiClient, id: &str, name: &str, logs: &Path, region_away: bool) {
    let events = events(api, id).await;
    let Some(start) = events
        .iter()
        .rposition(|(kind, detail, _)| kind == "status" && detail.contains("→ Deploying"))
    else {
        return;
    };
    let marks: [(&str, &str, &str); 8] = [
        ("power on", "power.on", ""),
        ("PXE and ephemeral boot", "boot.metadata", ""),
        ("disk and partitioning", "deploy.partitioning", "done"),
        ("image write", "deploy.image", "done"),
        ("bootloader", "deploy.bootloader", "done"),
        ("network, seed, results", "deploy.installed", ""),
        (
            "reboot and first boot to phone-home",
            "deploy.phone-home",
            "",
        ),
        ("Deployed", "status", "Deployed"),
    ];
    let mut at = events[start].2;
    let first = at;
    let mut from = start;
    let mut table = format!(
        "{name}: deploy by phase{}\n",
        if region_away {
            " (region away during the install: later phases include the outage)"
        } else {
            ""
        }
    );
    for (label, kind, needle) in marks {
        let Some(found) = events[from..]
            .iter()
            .position(|(k, d, _)| k == kind && d.contains(needle))
        else {
            break;
        };
        let (_, detail, t) = &events[from + found];
        table += &format!(
            "  {label:<40} {:>7.1} s  {}\n",
            (t - at) as f64 / 1000.0,
            if kind == "deploy.image" {
                detail.as_str()
            } else {
                ""
            }
        );
        at = *t;
        from += found + 1;
    }
    table += &format!(
        "  {:<40} {:>7.1} s\n",
        "total, deploy → Deployed",
        (at - first) as f64 / 1000.0
    );
    eprint!("{table}");
    let _ = std::fs::write(logs.join("phases.txt"), table);
}
