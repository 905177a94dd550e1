//! A real BMC for tests: OpenIPMI's `ipmi_sim` on a free loopback UDP port,
//! with a `chassis_control` script that keeps the power and the boot device
//! in files, so both are real state that `ipmitool` (the reference client)
//! reads back. Killed on drop, however the test ends.

use std::net::UdpSocket;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The BMC's administrator.
pub const USER: &str = "admin";
/// Its password.
pub const PASSWORD: &str = "Bmc-pw-7f3a9c-2e81";

/// Keeps power (`power`: 0/1), boot device (`boot`) and a log of every `set`
/// (`log`) in files next to itself. ipmi_sim runs it as
/// `chassis_control 0x20 get power boot` and `... set power 1`, etc.
const CHASSIS_CONTROL: &str = r#"#!/bin/sh
dir=$(dirname "$0")
shift
op=$1
shift
case $op in
get)
    for parm in "$@"; do
        case $parm in
        power) echo "power:$(cat "$dir/power")" ;;
        boot) echo "boot:$(cat "$dir/boot")" ;;
        *) echo "invalid parameter: $parm"; exit 1 ;;
        esac
    done ;;
set)
    while [ $# -ge 2 ]; do
        parm=$1; val=$2; shift 2
        echo "$parm $val" >> "$dir/log"
        case $parm in
        power) echo "$val" > "$dir/power" ;;
        boot) echo "$val" > "$dir/boot" ;;
        shutdown) echo 0 > "$dir/power" ;;
        reset|identify) ;;
        *) echo "invalid parameter: $parm"; exit 1 ;;
        esac
    done ;;
*) exit 1 ;;
esac
"#;

/// A running `ipmi_sim`, killed on drop.
pub struct Bmc {
    child: Child,
    dir: tempfile::TempDir,
    /// The UDP port it answers on, on 127.0.0.1.
    pub port: u16,
}

impl Bmc {
    /// Starts a simulator and waits until ipmitool gets an answer from it.
    pub fn start() -> Bmc {
        // Another process may take the free port before ipmi_sim binds it;
        // then ipmi_sim exits and we try another port.
        for _ in 0..5 {
            let port = free_udp_port();
            let mut bmc = Bmc::spawn(port);
            if bmc.wait_until_answering() {
                return bmc;
            }
        }
        panic!("ipmi_sim did not come up");
    }

    fn spawn(port: u16) -> Bmc {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path();
        let script = path.join("chassis_control");
        std::fs::write(&script, CHASSIS_CONTROL).unwrap();
        make_executable(&script);
        std::fs::write(path.join("power"), "0\n").unwrap();
        std::fs::write(path.join("boot"), "none\n").unwrap();
        std::fs::write(path.join("log"), "").unwrap();
        write_sim_config(path, &format!("bmc{port}"), port, &script);
        let log = std::fs::File::create(path.join("ipmi_sim.log")).unwrap();
        let child = Command::new("ipmi_sim")
            .args(SIM_ARGS)
            .current_dir(path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("ipmi_sim must be installed (Debian package openipmi)");
        Bmc { child, dir, port }
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

    /// Runs ipmitool against this BMC; its output, if it succeeded.
    pub fn try_ipmitool(&self, password: &str, args: &[&str]) -> Option<String> {
        run_ipmitool(Command::new("ipmitool"), self.port, password, args)
    }

    /// Runs ipmitool against this BMC with the right password; panics if it fails.
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

    /// The `set` commands ipmi_sim ran, oldest first.
    pub fn chassis_log(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("log"))
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Bmc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `ipmi_sim` arguments for the configuration [`write_sim_config`]
/// writes; run it with the directory as its working directory.
pub const SIM_ARGS: [&str; 7] = ["-n", "-c", "lan.conf", "-f", "bmc.emu", "-s", "state"];

/// Writes an `ipmi_sim` configuration into `dir`: `lan.conf` (BMC `name`
/// on 127.0.0.1:`port`, [`USER`] with [`PASSWORD`] as its administrator,
/// chassis control by the program `chassis_control`), `bmc.emu` (one
/// management controller at 0x20 with a SEL) and the `state` directory.
/// The one writer both simulators (this module's [`Bmc`] and
/// [`crate::vm_bmc::VmBmc`]) use.
pub fn write_sim_config(dir: &Path, name: &str, port: u16, chassis_control: &Path) {
    std::fs::create_dir(dir.join("state")).unwrap();
    std::fs::write(
        dir.join("lan.conf"),
        format!(
            r#"name "{name}"
set_working_mc 0x20
  startlan 1
    addr 127.0.0.1 {port}
    priv_limit admin
    allowed_auths_admin none md2 md5 straight
    guid a123456789abcdefa123456789abcdef
  endlan
  chassis_control "{script} 0x20"
  user 2 true "{USER}" "{PASSWORD}" admin 10 none md2 md5 straight
"#,
            script = chassis_control.display()
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("bmc.emu"),
        "mc_setbmc 0x20\n\
         mc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr\n\
         sel_enable 0x20 1000 0x0a\n\
         mc_enable 0x20\n",
    )
    .unwrap();
}

/// Runs `ipmitool` (the program `command` starts, maybe inside a namespace)
/// against the BMC on 127.0.0.1:`port` as [`USER`]; its output, if it succeeded.
/// Cipher suite 3 given up front: discovering it stalls each call ≈ 10 s.
pub fn run_ipmitool(
    mut command: Command,
    port: u16,
    password: &str,
    args: &[&str],
) -> Option<String> {
    let port = port.to_string();
    let output = command
        .args(["-I", "lanplus", "-C", "3", "-H", "127.0.0.1", "-p", &port])
        .args(["-U", USER, "-P", password, "-N", "1", "-R", "2"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("ipmitool must be installed");
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Makes `path` executable (mode 0755).
pub fn make_executable(path: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}
