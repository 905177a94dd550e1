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

use std::path::PathBuf;

use crate::build_once::{self, ImageBuild};

/// The built ephemeral image, ready to boot (QEMU `-kernel`/`-initrd`, or
/// uploaded as boot resources).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EphemeralImage {
    /// The Linux kernel (bzImage), a copy of the newest `/boot/vmlinuz-*`.
    pub kernel: PathBuf,
    /// The gzipped newc initramfs: busybox, the agent as `/init`, and the
    /// NIC and disk modules.
    pub initrd: PathBuf,
    /// The tools squashfs (hardware tests and LLDP), uploaded as the
    /// image's `squashfs`; the agent fetches it only when a run needs it.
    pub tools: PathBuf,
}

/// The directory holding `build.sh`, `agent.sh` and the other image inputs.
pub fn source_dir() -> PathBuf {
    build_once::workspace().join("images/ephemeral")
}

/// The ephemeral image in `target/ephemeral/`, built first when it is
/// missing or its stamp no longer matches the inputs (`build.sh`,
/// `agent.sh`, `udhcpc.script`, `images/lib.sh`, the kernel, busybox).
///
/// Safe to call from many tests and processes at once (see
/// [`build_once`]): one builds while the others wait. The build
/// installs `cpio`, `busybox-static` and `linux-image-amd64` when missing,
/// which needs root.
pub fn image() -> EphemeralImage {
    let script = source_dir().join("build.sh");
    let out = ImageBuild {
        name: "ephemeral",
        script: &script,
        args: &[],
        files: &["vmlinuz", "initrd.gz", "tools.squashfs"],
    }
    .output();
    EphemeralImage {
        kernel: out.join("vmlinuz"),
        initrd: out.join("initrd.gz"),
        tools: out.join("tools.squashfs"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::path::Path;
    use std::process::Command;

    fn wanted_stamp(script: &Path) -> String {
        build_once::stamp(script, &[])
    }

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
