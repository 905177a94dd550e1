//! Builds an image on demand, once, however many tests and processes ask.
//!
//! An image's `build.sh OUT_DIR [ARGS…]` writes its files and, last, a
//! `stamp` (a hash of its inputs) into `OUT_DIR`; `build.sh --stamp [ARGS…]`
//! prints the stamp the current inputs give, without building. The output in
//! `target/NAME/` is current when every file is there and the stamps match;
//! otherwise one caller builds, under an exclusive `flock` on
//! `target/NAME.lock`, into a staging directory renamed into place, while
//! the others wait and then find it current.

use std::ffi::OsStr;
use std::fs::{self, File};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// Serialises builds within this process; the file lock covers the others.
static BUILD: Mutex<()> = Mutex::new(());

/// One image build.
#[derive(Debug, Clone, Copy)]
pub struct ImageBuild<'a> {
    /// The output's directory under the target dir (also its lock's name).
    pub name: &'a str,
    /// The image's `build.sh`, run with bash.
    pub script: &'a Path,
    /// Arguments after `OUT_DIR` (and after `--stamp`).
    pub args: &'a [&'a OsStr],
    /// The files the output holds besides `stamp`.
    pub files: &'a [&'a str],
}

impl ImageBuild<'_> {
    /// The output directory, built first when it is missing or stale.
    /// Panics with the script's stderr if the build fails.
    pub fn output(&self) -> PathBuf {
        let _guard = BUILD.lock().unwrap_or_else(|e| e.into_inner());
        let target = target_dir();
        let out = target.join(self.name);
        if self.is_current(&out) {
            return out;
        }
        fs::create_dir_all(&target).expect("create target dir");
        let _lock = lock_file(&target.join(format!("{}.lock", self.name)));
        // Another process may have built it while we waited for the lock.
        if self.is_current(&out) {
            return out;
        }
        let staging = tempfile::Builder::new()
            .prefix(&format!(".{}-", self.name))
            .tempdir_in(&target)
            .expect("create staging dir");
        let built = staging.path().join("image");
        let output = Command::new("bash")
            .arg(self.script)
            .arg(&built)
            .args(self.args)
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e}", self.script.display()));
        assert!(
            output.status.success(),
            "{} failed ({}): {}",
            self.script.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        // The old image goes with the staging dir; a QEMU still running from
        // it keeps its open files.
        if out.exists() {
            fs::rename(&out, staging.path().join("old")).expect("move the old image aside");
        }
        fs::rename(&built, &out).expect("move the new image into place");
        out
    }

    fn is_current(&self, out: &Path) -> bool {
        let stamp = stamp(self.script, self.args);
        self.files.iter().all(|f| out.join(f).is_file())
            && fs::read_to_string(out.join("stamp")).is_ok_and(|s| s.trim() == stamp)
    }
}

/// The stamp `script` writes for the current inputs, computed without
/// building (`build.sh --stamp ARGS…`).
pub fn stamp(script: &Path, args: &[&OsStr]) -> String {
    let output = Command::new("bash")
        .arg(script)
        .arg("--stamp")
        .args(args)
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

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// Cargo's target directory (`CARGO_TARGET_DIR`, relative to the workspace,
/// or `target/`).
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => workspace().join(dir),
        None => workspace().join("target"),
    }
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
