//! Installs the Debian packages a test needs when they are missing.

use std::path::Path;
use std::process::Command;
use std::sync::Mutex;

static APT: Mutex<()> = Mutex::new(());

/// Makes sure `program` exists, installing `package` with apt-get if not.
pub fn ensure(program: &str, package: &str) {
    if Path::new(program).exists() || which(program) {
        return;
    }
    let _guard = APT.lock().unwrap_or_else(|e| e.into_inner());
    if Path::new(program).exists() || which(program) {
        return;
    }
    let status = Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends", package])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .expect("run apt-get");
    assert!(
        status.success(),
        "apt-get install {package} failed; run scripts/test.sh as root"
    );
}

fn which(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}
