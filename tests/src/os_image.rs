//! The deployable OS image: Debian 12 as a zstd-compressed root filesystem
//! tarball with a kernel, GRUB for BIOS and UEFI, cloud-init and OpenSSH.
//! `images/os/build.sh` builds it with mmdebstrap from Debian's packages
//! into `target/os/`; [`image`] runs the build when that output is missing
//! or stale (the first build takes minutes).

use std::path::PathBuf;

use crate::build_once::{self, ImageBuild};

/// The built OS image, ready to upload as a `rootfs` boot resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OsImage {
    /// `rootfs.tar.zst`.
    pub rootfs: PathBuf,
    /// Its SHA-256, hex.
    pub sha256: String,
    /// The size of the tar stream it unpacks to.
    pub uncompressed_bytes: u64,
}

/// The OS image in `target/os/`, built first when missing or stale. Safe
/// to call from many tests and processes at once (see [`build_once`]).
pub fn image() -> OsImage {
    let script = build_once::workspace().join("images/os/build.sh");
    let out = ImageBuild {
        name: "os",
        script: &script,
        args: &[],
        files: &["rootfs.tar.zst", "sha256", "uncompressed_bytes"],
    }
    .output();
    let read = |name: &str| {
        std::fs::read_to_string(out.join(name))
            .unwrap_or_else(|e| panic!("{}: {e}", out.join(name).display()))
            .trim()
            .to_string()
    };
    OsImage {
        rootfs: out.join("rootfs.tar.zst"),
        sha256: read("sha256"),
        uncompressed_bytes: read("uncompressed_bytes")
            .parse()
            .expect("uncompressed_bytes holds a number"),
    }
}
