//! A virtual machine whose power and boot device are driven over real IPMI:
//! OpenIPMI's `ipmi_sim` runs in one network namespace (the BMC's), and its
//! `chassis_control` program starts and kills a QEMU machine in another (the
//! machine's, where a tap joins it to a rack). `ipmitool chassis bootdev pxe`
//! then `chassis power on` PXE-boots the machine; `chassis power off` kills
//! it; a machine that powers itself off reads as off. Everything (QEMU
//! included) is killed on drop, however the test ends.
//!
//! What ipmi_sim (OpenIPMI 1.0.13) hands `chassis_control`, as seen here:
//! - `chassis power status` → `get power`; `chassis bootparam get 5` → `get boot`;
//! - `chassis power on`/`off` → `set power 1`/`set power 0`;
//! - `chassis power cycle` → `set power 0`, then `set power 1` from a 1 s timer
//!   inside ipmi_sim, after ipmitool has already returned;
//! - `chassis power reset` → `set reset 1`; `chassis power soft` → `set shutdown 1`;
//!   `chassis identify` → `set identify 15 0`;
//! - `chassis bootdev X` → `get boot` (the boot-info acknowledge), then `set boot V`
//!   with V from ipmi_sim's own map: `pxe`, `default` (ipmitool's `disk`),
//!   `cdrom`, `bios`, `none`. `safe`, `diag` and `floppy` are not in the map:
//!   ipmi_sim fails them without running the program, and ipmitool still
//!   exits 0 (it prints "Set Chassis Boot Parameter 5 failed"). `options=persistent`
//!   and `efiboot` are dropped: the boot device always stays as set.
//!
//! ipmi_sim runs each call with `popen` and reads its output until end of
//! file, one call at a time, with the BMC deaf meanwhile: calls must be quick,
//! and QEMU must hold neither the pipe nor any other descriptor of ipmi_sim's.
//!
//! `chassis power on` returns about 0.3 s after QEMU is up (≈ 0.1 s), once
//! QEMU has survived its start-up: if it quits at once (busy tap, bad option)
//! the command fails, and [`VmBmc::qemu_output`] says why.

use std::fs::File;
use std::os::fd::AsRawFd as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::bmc::{make_executable, write_sim_config, PASSWORD, SIM_ARGS};
use crate::netns::Netns;
use crate::vm_qemu::{start_qemu_script, OVMF_CODE, OVMF_VARS};
pub use crate::vm_qemu::{Firmware, VmSpec};

/// ipmi_sim runs it as `chassis_control 0x20 get power boot`, `... set power 1`,
/// `... set boot pxe`, etc. (the shell has already removed ipmi_sim's quotes).
/// State lives next to it: `boot` (the boot device), `qemu.pid`, `log` (every
/// `set`), `events` (QEMU starts and stops), `lock`, and `disabled` once the
/// harness is tearing down.
const CHASSIS_CONTROL: &str = r#"#!/bin/sh
dir=$(dirname "$0")
shift
op=$1
shift
# One call at a time: ipmi_sim itself calls serially, but the harness's drop
# (and any second caller) must not interleave with a start or a stop.
exec 9>>"$dir/lock"
flock 9
# The harness is tearing down: start nothing more.
[ -e "$dir/disabled" ] && exit 1
token=$(cat "$dir/token")

# Is process $1 alive? Orphaned QEMUs may linger as zombies here, unreaped.
running() {
    state=$(sed -n 's/^State:[[:space:]]*\([A-Za-z]\).*/\1/p' "/proc/$1/status" 2>/dev/null)
    [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}
# Is process $1 this machine's QEMU (or on its way to exec it)? The recorded
# pid may have been reused once QEMU exited on its own.
ours() {
    running "$1" && tr '\0' '\n' <"/proc/$1/cmdline" 2>/dev/null | grep -qxF -- "$token"
}
# Sets $pid to the running QEMU's; false if the machine is off.
qemu_pid() {
    pid=$(cat "$dir/qemu.pid" 2>/dev/null)
    [ -n "$pid" ] && ours "$pid"
}

power_on() {
    qemu_pid && return 0
    case $(cat "$dir/boot") in
    pxe) order=n ;;
    *) order=c ;;
    esac
    # Detached: its own session (setsid, in start-qemu), no pipe of ipmi_sim's
    # (popen reads until every writer is gone), not the lock.
    "$dir/start-qemu" "$order" </dev/null >>"$dir/qemu.out" 2>&1 9>&- &
    pid=$!
    echo "$pid" >"$dir/qemu.pid"
    echo "start $pid boot=$order" >>"$dir/events"
    # start-qemu execs ip, which execs setsid, which execs QEMU: the pid stays.
    # Wait until it is QEMU, then give it 0.2 s: a bad option or a busy tap
    # make it quit within about 60 ms, and then power on fails (ipmitool
    # reports an error) rather than the machine silently staying off.
    i=0
    while [ $i -lt 300 ] && running "$pid" &&
        [ "$(cat "/proc/$pid/comm" 2>/dev/null)" != qemu-system-x86 ]; do
        sleep 0.01
        i=$((i + 1))
    done
    sleep 0.2
    if ! running "$pid"; then
        echo "exit $pid" >>"$dir/events"
        : >"$dir/qemu.pid"
        tail -n 5 "$dir/qemu.out"
        exit 1
    fi
}

power_off() {
    if qemu_pid; then
        # QEMU quits at once on SIGTERM; SIGKILL after 1 s, and give up
        # after 3 s: ipmi_sim is deaf while we wait.
        kill -TERM "$pid" 2>/dev/null
        i=0
        while running "$pid" && [ $i -lt 300 ]; do
            i=$((i + 1))
            [ $i -eq 100 ] && kill -KILL "$pid" 2>/dev/null
            sleep 0.01
        done
        echo "stop $pid" >>"$dir/events"
    fi
    : >"$dir/qemu.pid"
}

case $op in
get)
    for parm in "$@"; do
        case $parm in
        power) if qemu_pid; then echo power:1; else echo power:0; fi ;;
        boot) echo "boot:$(cat "$dir/boot")" ;;
        *) echo "invalid parameter: $parm"; exit 1 ;;
        esac
    done ;;
set)
    while [ $# -ge 2 ]; do
        parm=$1; val=$2; shift 2
        echo "$parm $val" >>"$dir/log"
        case $parm in
        power) if [ "$val" = 0 ]; then power_off; else power_on; fi ;;
        boot) echo "$val" >"$dir/boot" ;;
        # No way into the guest's ACPI (-monitor none): a soft shutdown is a hard off.
        shutdown) power_off ;;
        # A reset restarts a running machine (with the current boot device);
        # it does not power on one that is off.
        reset) if qemu_pid; then power_off; power_on; fi ;;
        identify) ;;
        *) echo "invalid parameter: $parm"; exit 1 ;;
        esac
    done ;;
*) exit 1 ;;
esac
"#;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A running `ipmi_sim` driving one QEMU machine; both killed on drop.
pub struct VmBmc {
    child: Child,
    dir: tempfile::TempDir,
    bmc_ns: String,
    /// QEMU's `-name`: finds this machine's QEMU among all processes.
    token: String,
    /// The UDP port it answers on, on 127.0.0.1 inside the BMC's namespace.
    pub port: u16,
}

impl VmBmc {
    /// Starts a simulator in `bmc_ns` whose chassis is `vm`, run in
    /// `machine_ns` (powered off until told otherwise; boot device `none`,
    /// i.e. the disk), and waits until ipmitool gets an answer from it.
    pub fn start(bmc_ns: &Netns, machine_ns: &Netns, vm: VmSpec) -> VmBmc {
        crate::packages::ensure("/usr/bin/ipmi_sim", "openipmi");
        crate::packages::ensure("/usr/bin/ipmitool", "ipmitool");
        crate::packages::ensure("/usr/bin/qemu-system-x86_64", "qemu-system-x86");
        crate::packages::ensure("/usr/lib/ipxe/qemu/pxe-e1000.rom", "ipxe-qemu");
        if vm.firmware == Firmware::Uefi {
            crate::packages::ensure(OVMF_CODE, "ovmf");
        }
        // Another process in the namespace may take the free port before
        // ipmi_sim binds it; then ipmi_sim exits and we try another port.
        for _ in 0..5 {
            let port = crate::netns::run_in(bmc_ns, || {
                std::net::UdpSocket::bind("127.0.0.1:0")
                    .and_then(|socket| socket.local_addr())
                    .expect("a free UDP port in the BMC's namespace")
                    .port()
            });
            let mut bmc = VmBmc::spawn(bmc_ns, machine_ns, &vm, port);
            if bmc.wait_until_answering() {
                return bmc;
            }
        }
        panic!("ipmi_sim did not come up in namespace {}", bmc_ns.name);
    }

    fn spawn(bmc_ns: &Netns, machine_ns: &Netns, vm: &VmSpec, port: u16) -> VmBmc {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path();
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let token = format!(
            "edgemetal-vm-{}-{}-{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let script = path.join("chassis_control");
        std::fs::write(&script, CHASSIS_CONTROL).unwrap();
        make_executable(&script);
        let start_qemu = path.join("start-qemu");
        std::fs::write(&start_qemu, start_qemu_script(machine_ns, vm, &token, path)).unwrap();
        make_executable(&start_qemu);
        std::fs::write(path.join("token"), format!("{token}\n")).unwrap();
        std::fs::write(path.join("boot"), "none\n").unwrap();
        for empty in ["log", "events", "qemu.pid", "qemu.out", "lock"] {
            std::fs::write(path.join(empty), "").unwrap();
        }
        if vm.firmware == Firmware::Uefi {
            std::fs::copy(OVMF_VARS, path.join("ovmf-vars.fd")).expect("copy OVMF's variables");
        }
        // Sparse: no blocks until the guest writes.
        File::create(path.join("disk.img"))
            .and_then(|disk| disk.set_len(vm.disk_bytes))
            .expect("create the disk image");
        write_sim_config(path, &format!("vm{port}"), port, &script);
        let log = File::create(path.join("ipmi_sim.log")).unwrap();
        // `ip netns exec` execs ipmi_sim: the child's pid is ipmi_sim's.
        let child = bmc_ns
            .command("ipmi_sim")
            .args(SIM_ARGS)
            .current_dir(path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("ipmi_sim must be installed (Debian package openipmi)");
        VmBmc {
            child,
            dir,
            bmc_ns: bmc_ns.name.clone(),
            token,
            port,
        }
    }

    fn wait_until_answering(&mut self) -> bool {
        for _ in 0..100 {
            if self.child.try_wait().unwrap().is_some() {
                return false;
            }
            if self
                .try_ipmitool(PASSWORD, &["chassis", "power", "status"])
                .is_some()
            {
                return true;
            }
            // Not up yet: ipmitool fails at once on ICMP port unreachable.
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// Runs ipmitool against this BMC, inside its namespace; its output, if it
    /// succeeded.
    pub fn try_ipmitool(&self, password: &str, args: &[&str]) -> Option<String> {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.bmc_ns, "ipmitool"]);
        crate::bmc::run_ipmitool(command, self.port, password, args)
    }

    /// Runs ipmitool against this BMC with the right password; panics if it fails.
    /// (ipmitool exits 0 on some refusals, e.g. `chassis bootdev floppy`:
    /// check the output or [`VmBmc::boot_device`].)
    pub fn ipmitool(&self, args: &[&str]) -> String {
        self.try_ipmitool(PASSWORD, args)
            .unwrap_or_else(|| panic!("ipmitool {args:?} failed"))
    }

    /// `Chassis Power is on` or `... off`, as ipmitool reports it.
    pub fn power_status(&self) -> String {
        self.ipmitool(&["chassis", "power", "status"])
            .trim()
            .to_owned()
    }

    /// The `set` commands ipmi_sim ran (`power 1`, `boot pxe`, …), oldest first.
    pub fn chassis_log(&self) -> Vec<String> {
        self.read("log").lines().map(str::to_owned).collect()
    }

    /// The boot device as ipmi_sim last set it: `none` (initially), `pxe`,
    /// `default` (what `bootdev disk` becomes), `cdrom` or `bios`. Only `pxe`
    /// boots from the network.
    pub fn boot_device(&self) -> String {
        self.read("boot").trim().to_owned()
    }

    /// The running QEMU's pid; `None` if the machine is off (never started,
    /// killed, or exited by itself).
    pub fn qemu_pid(&self) -> Option<u32> {
        let pid = self.read("qemu.pid").trim().parse().ok()?;
        is_ours(pid, &self.token).then_some(pid)
    }

    /// Whether the machine's QEMU is running (what `get power` reports).
    pub fn qemu_running(&self) -> bool {
        self.qemu_pid().is_some()
    }

    /// How many times QEMU was started (power on, cycle or reset).
    pub fn qemu_starts(&self) -> usize {
        self.read("events")
            .lines()
            .filter(|line| line.starts_with("start "))
            .count()
    }

    /// The machine's disk: a raw file, sparse where the guest wrote nothing
    /// or discarded.
    pub fn disk_path(&self) -> PathBuf {
        self.dir.path().join("disk.img")
    }

    /// What QEMU printed on stdout and stderr, every run: why it did not
    /// start (a busy tap, a bad option), or `terminating on signal 15`.
    pub fn qemu_output(&self) -> String {
        self.read("qemu.out")
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default()
    }
}

impl Drop for VmBmc {
    fn drop(&mut self) {
        // The BMC first, so that it runs no more chassis_control.
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A chassis_control it started may still be running (popen's children
        // outlive it) and about to start QEMU: wait for its lock, and leave a
        // mark that makes any later one do nothing.
        let lock = File::options()
            .append(true)
            .open(self.dir.path().join("lock"));
        if let Ok(lock) = &lock {
            let deadline = Instant::now() + Duration::from_secs(10);
            // SAFETY: flock on a descriptor we own; released when `lock` drops.
            while unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0
                && Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = std::fs::write(self.dir.path().join("disabled"), "");
        // Every process carrying the token (QEMU, or start-qemu on its way
        // to it), whether or not the pid file knows it.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let pids = pids_with_arg(&self.token);
            if pids.is_empty() || Instant::now() > deadline {
                break;
            }
            for pid in pids {
                // SAFETY: plain kill(2) of a process whose command line has our token.
                unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        drop(lock);
    }
}

/// Whether `pid` is alive (not a zombie) and has `token` among its arguments.
fn is_ours(pid: u32, token: &str) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let alive = status
        .lines()
        .find_map(|line| line.strip_prefix("State:"))
        .map(|state| !matches!(state.trim_start().chars().next(), Some('Z' | 'X') | None))
        .unwrap_or(false);
    alive && has_arg(pid, token)
}

fn has_arg(pid: u32, token: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|cmdline| {
            cmdline
                .split(|&b| b == 0)
                .any(|arg| arg == token.as_bytes())
        })
        .unwrap_or(false)
}

/// Live (non-zombie) processes with `token` among their arguments.
fn pids_with_arg(token: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| is_ours(pid, token))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netns::MachineSite;

    fn wait_for(what: &str, done: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// About 2 s: power and boot device over IPMI really drive QEMU.
    #[test]
    fn ipmi_starts_and_stops_the_machine_and_sees_it_power_itself_off() {
        let site = MachineSite::create("10.86.0.1/24");
        let logs = tempfile::tempdir().unwrap();
        let bmc = VmBmc::start(
            &site.rack,
            &site.machine,
            VmSpec {
                mac: "52:54:00:86:00:01".into(),
                memory_mib: 128,
                cpus: 1,
                disk_bytes: 1 << 30,
                disk_serial: "EMTEST0001".into(),
                tap: site.tap.clone(),
                serial_log: logs.path().join("serial.log"),
                firmware: Firmware::Bios,
                reboot: false,
            },
        );
        assert_eq!(bmc.power_status(), "Chassis Power is off");

        bmc.ipmitool(&["chassis", "bootdev", "pxe"]);
        assert_eq!(bmc.boot_device(), "pxe");
        bmc.ipmitool(&["chassis", "power", "on"]);
        let pid = bmc.qemu_pid().expect("QEMU runs once power on returns");
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
        let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
        assert!(
            args.windows(2).any(|w| w == [&b"-boot"[..], &b"n"[..]]),
            "{}",
            String::from_utf8_lossy(&cmdline)
        );
        assert_eq!(bmc.power_status(), "Chassis Power is on");
        // Already on: nothing restarts.
        bmc.ipmitool(&["chassis", "power", "on"]);
        assert_eq!(bmc.qemu_starts(), 1);

        bmc.ipmitool(&["chassis", "power", "off"]);
        assert!(!bmc.qemu_running());
        assert!(!is_ours(pid, &bmc.token));
        assert_eq!(bmc.power_status(), "Chassis Power is off");

        // QEMU quitting by itself (as on a guest's poweroff) reads as off.
        bmc.ipmitool(&["chassis", "power", "on"]);
        let pid = bmc.qemu_pid().expect("QEMU runs again");
        // SAFETY: kill(2) of the QEMU this test started.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
        wait_for("QEMU to exit", || !bmc.qemu_running());
        assert_eq!(bmc.power_status(), "Chassis Power is off");
        assert_eq!(bmc.qemu_starts(), 2);
        assert_eq!(
            bmc.chassis_log(),
            ["boot pxe", "power 1", "power 1", "power 0", "power 1"]
        );
    }
}
