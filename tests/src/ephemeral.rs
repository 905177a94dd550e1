//! The ephemeral (commissioning) boot image: the Debian kernel and a busybox
//! initramfs whose `/init` is the commissioning agent
//! (`images/ephemeral/agent.sh`). `images/ephemeral/build.sh` builds it from
//! this machine's Debian packages into `target/ephemeral/`; [`image`] runs
//! the build when that output is missing or stale.
//!
//! The agent reads `edgemetal.rack=`, `BOOTIF=` and `edgemetal.purpose=`
//! from the kernel command line, gets a DHCP lease on the boot NIC, reads
//! `GET <rack>/metadata/v1/meta-data`, gathers the hardware facts and POSTs
//! them as a tar (`Authorization: Bearer <token>`) to the metadata's
//! `results_url`, then powers the machine off. Its console lines start with
//! `edgemetal-agent: `; a fatal error prints `edgemetal-agent: FAILED <why>`.

use std::fs::{self, File};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// The built ephemeral image, ready to boot (QEMU `-kernel`/`-initrd`, or
/// uploaded as boot resources).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EphemeralImage {
    /// The Linux kernel (bzImage), a copy of the newest `/boot/vmlinuz-*`.
    pub kernel: PathBuf,
    /// The gzipped newc initramfs: busybox, the agent as `/init`, and the
    /// NIC and disk modules.
    pub initrd: PathBuf,
}

/// Serialises builds within this process; the file lock covers the others.
static BUILD: Mutex<()> = Mutex::new(());

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// The directory holding `build.sh`, `agent.sh` and the other image inputs.
pub fn source_dir() -> PathBuf {
    workspace().join("images/ephemeral")
}

fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => workspace().join(dir),
        None => workspace().join("target"),
    }
}

/// The stamp `build.sh` writes for the current inputs, computed without
/// building (`build.sh --stamp`).
fn wanted_stamp(script: &Path) -> String {
    let output = Command::new("bash")
        .arg(script)
        .arg("--stamp")
        .output()
        .unwrap_or_else(|e| panic!("run {} --stamp: {e}", script.display()));
    assert!(
        output.status.success(),
        "{} --stamp failed: {}",
        script.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("stamp is text")
        .trim()
        .to_string()
}

fn is_current(out: &Path, stamp: &str) -> bool {
    out.join("vmlinuz").is_file()
        && out.join("initrd.gz").is_file()
        && fs::read_to_string(out.join("stamp")).is_ok_and(|s| s.trim() == stamp)
}

/// An exclusive `flock` on `path`, released when the file is dropped.
fn lock_file(path: &Path) -> File {
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    loop {
        // SAFETY: flock on a file descriptor we own, for as long as we hold it.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
            return file;
        }
        let err = std::io::Error::last_os_error();
        assert!(
            err.kind() == std::io::ErrorKind::Interrupted,
            "flock {}: {err}",
            path.display()
        );
    }
}

/// The ephemeral image in `target/ephemeral/`, built first when it is
/// missing or its stamp no longer matches the inputs (`build.sh`,
/// `agent.sh`, `udhcpc.script`, `images/lib.sh`, the kernel, busybox).
///
/// Safe to call from many tests and processes at once: one builds, into a
/// temporary directory renamed into place, while the others wait. The build
/// installs `cpio`, `busybox-static` and `linux-image-amd64` when missing,
/// which needs root.
pub fn image() -> EphemeralImage {
    let _guard = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    let script = source_dir().join("build.sh");
    let target = target_dir();
    let out = target.join("ephemeral");
    let image = EphemeralImage {
        kernel: out.join("vmlinuz"),
        initrd: out.join("initrd.gz"),
    };
    let stamp = wanted_stamp(&script);
    if is_current(&out, &stamp) {
        return image;
    }

    fs::create_dir_all(&target).expect("create target dir");
    let _lock = lock_file(&target.join("ephemeral.lock"));
    // Another process may have built it while we waited for the lock.
    let stamp = wanted_stamp(&script);
    if is_current(&out, &stamp) {
        return image;
    }

    let staging = tempfile::Builder::new()
        .prefix(".ephemeral-")
        .tempdir_in(&target)
        .expect("create staging dir");
    let built = staging.path().join("image");
    let output = Command::new("bash")
        .arg(&script)
        .arg(&built)
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", script.display()));
    assert!(
        output.status.success(),
        "{} failed ({}): {}",
        script.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    // The old image goes with the staging dir; a QEMU still running from it
    // keeps its open files.
    if out.exists() {
        fs::rename(&out, staging.path().join("old")).expect("move the old image aside");
    }
    fs::rename(&built, &out).expect("move the new image into place");
    image
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A copy of the image sources (and the `lib.sh` beside them) in a
    /// temporary directory.
    fn copy_sources() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let copy = dir.path().join("ephemeral");
        fs::create_dir(&copy).unwrap();
        for entry in fs::read_dir(source_dir()).unwrap() {
            let entry = entry.unwrap();
            if !entry.file_type().unwrap().is_file() {
                continue;
            }
            fs::copy(entry.path(), copy.join(entry.file_name())).unwrap();
        }
        let lib = source_dir().join("../lib.sh");
        fs::copy(lib, dir.path().join("lib.sh")).unwrap();
        dir
    }

    #[test]
    fn the_stamp_changes_with_every_image_input() {
        let sources = copy_sources();
        let script = sources.path().join("ephemeral/build.sh");
        let original = wanted_stamp(&script);
        assert_eq!(original.len(), 64, "{original}");
        assert_eq!(wanted_stamp(&script), original, "the stamp is stable");
        assert_eq!(
            wanted_stamp(&source_dir().join("build.sh")),
            original,
            "the stamp depends on contents, not on the directory"
        );
        for input in ["agent.sh", "udhcpc.script", "build.sh", "../lib.sh"] {
            let path = sources.path().join("ephemeral").join(input);
            let text = fs::read_to_string(&path).unwrap();
            fs::write(&path, format!("{text}\n# changed\n")).unwrap();
            assert_ne!(wanted_stamp(&script), original, "{input} changed");
            fs::write(&path, text).unwrap();
            assert_eq!(wanted_stamp(&script), original, "{input} restored");
        }
    }

    #[test]
    fn the_agent_scripts_parse_under_busybox_sh() {
        let busybox = Path::new("/bin/busybox");
        if !busybox.exists() {
            // busybox-static comes with the first image() build.
            return;
        }
        for script in ["agent.sh", "udhcpc.script"] {
            let output = Command::new(busybox)
                .args(["sh", "-n"])
                .arg(source_dir().join(script))
                .output()
                .unwrap();
            assert!(
                output.status.success(),
                "{script}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
}
