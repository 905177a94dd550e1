//! Network boot against real firmware: a QEMU machine whose iPXE NIC ROM does
//! DHCP against the rack, checked on the wire.

use std::process::Stdio;

use edgemetal_tests::dhcp_site::{enrolled_rack_with_subnet, start_rack_in, Guard};
use edgemetal_tests::netns::MachineSite;
use edgemetal_tests::process::log_dir;
use edgemetal_tests::wait_until;

#[tokio::test]
async fn a_qemu_machine_with_an_ipxe_rom_is_offered_its_boot_script() {
    edgemetal_tests::packages::ensure("/usr/bin/qemu-system-x86_64", "qemu-system-x86");
    edgemetal_tests::packages::ensure("/usr/lib/ipxe/qemu/pxe-e1000.rom", "ipxe-qemu");
    let logs = log_dir("dhcp_qemu");
    let data = tempfile::tempdir().unwrap();
    let state = enrolled_rack_with_subnet(data.path(), &logs, "10.86.0").await;
    // The machine's NIC is a tap bridged to the rack, inside the machine's namespace.
    let site = MachineSite::create("10.86.0.1/24");
    let MachineSite {
        rack: server,
        machine,
        rack_if: server_if,
        machine_if,
        tap,
        ..
    } = &site;
    let _rack = start_rack_in(server, &state, server_if, &logs.join("rack-dhcp.log"));

    // The firmware's console is not reachable headless; what the rack sends
    // it is: a sniffer on the machine's bridge records every DHCP reply.
    let replies = logs.join("dhcp-replies.txt");
    let _ = std::fs::remove_file(&replies);
    let sniffer = data.path().join("sniff.py");
    std::fs::write(&sniffer, SNIFFER).unwrap();
    let _sniffer = Guard(
        machine
            .command("python3")
            .arg(&sniffer)
            // A bridge port, not the bridge: forwarded frames pass ports only.
            .arg(machine_if)
            .arg(&replies)
            .spawn()
            .unwrap(),
    );
    let mac = "52:54:00:86:00:01";
    let _qemu = Guard(
        machine
            .command("qemu-system-x86_64")
            .args([
                "-accel", "tcg", "-machine", "pc", "-m", "128", "-display", "none", "-monitor",
                "none",
            ])
            .args(["-serial", "null", "-boot", "n", "-no-reboot"])
            .arg("-netdev")
            .arg(format!("tap,id=n0,ifname={tap},script=no,downscript=no"))
            .arg("-device")
            .arg(format!("e1000,netdev=n0,mac={mac}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("qemu-system-x86_64"),
    );
    // iPXE (the NIC ROM) identifies itself as iPXE, so the rack must answer
    // with the HTTP URL of its boot script, and iPXE must take it (ACK).
    let expected = format!("http://10.86.0.1:5248/boot/ipxe/{mac}.ipxe");
    let ack = wait_until(
        "the rack to ACK the firmware with its boot script",
        std::time::Duration::from_secs(90),
        || {
            let replies = replies.clone();
            let expected = expected.clone();
            async move {
                let text = std::fs::read_to_string(&replies).ok()?;
                text.lines()
                    .find(|line| line.starts_with("5 ") && line.contains(&expected))
                    .map(str::to_string)
            }
        },
    )
    .await;
    assert!(ack.contains(&format!("file={expected}")), "{ack}");
    let journal = std::fs::read_to_string(state.join("dhcp-leases.jsonl")).unwrap();
    assert!(
        journal.contains(mac),
        "the firmware's lease is journaled: {journal}"
    );
}

/// Records DHCP replies (server port 67 to anyone) seen on an interface:
/// message type, the `file` field and option 67.
const SNIFFER: &str = r#"
import socket, struct, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.ntohs(3))
s.bind((sys.argv[1], 0))
out = open(sys.argv[2], "a")
while True:
    f = s.recv(65535)
    if len(f) < 42 or f[12:14] != b"\x08\x00":
        continue
    ip = f[14:]
    if ip[9] != 17:
        continue
    udp = ip[(ip[0] & 15) * 4:]
    if struct.unpack("!H", udp[:2])[0] != 67:
        continue
    d = udp[8:]
    if len(d) < 240:
        continue
    name = d[108:236].split(b"\0")[0].decode(errors="replace")
    opts, i = {}, 240
    while i < len(d) and d[i] != 255:
        if d[i] == 0:
            i += 1
            continue
        opts[d[i]] = d[i + 2:i + 2 + d[i + 1]]
        i += 2 + d[i + 1]
    kind = opts.get(53, b"?")[0]
    out.write(f"{kind} file={name} opt67={opts.get(67, b'').decode(errors='replace')}\n")
    out.flush()
"#;
