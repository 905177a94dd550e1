//! What an uploaded boot resource really is. Each kind has a signature
//! (a kernel's boot header, an initrd's compressor or cpio magic,
//! squashfs's superblock); an OS image is read through in full (zstd, then
//! tar) for its unpacked size and for what the installer needs in it. A
//! body that is none of these (a multipart form sent as the file, a web
//! page, a truncated download) is refused before it is stored as a resource.

use std::io::Read;
use std::path::Path;

use edgemetal_protocol::BootResourceKind;

use crate::store::OsImageFacts;

/// Why an upload is not what it claims to be.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    /// The content does not start as the kind does.
    #[error("the content is not a {kind}: {why}")]
    NotKind {
        /// The kind claimed.
        kind: &'static str,
        /// What was found instead.
        why: String,
    },
    /// The blob could not be read back.
    #[error("cannot read the stored content: {0}")]
    Io(#[from] std::io::Error),
}

/// Files an OS image must hold for the installer to make it boot.
const REQUIRED: [(&str, &str); 2] = [
    ("boot/vmlinuz", "a kernel under /boot"),
    (
        "usr/sbin/grub-install",
        "GRUB (grub-install), which the installer runs from the image",
    ),
];

fn not(kind: &'static str, why: impl Into<String>) -> InspectError {
    InspectError::NotKind {
        kind,
        why: why.into(),
    }
}

/// Checks the blob at `path` is a `kind`; an OS image's facts when it is one.
pub fn inspect(kind: BootResourceKind, path: &Path) -> Result<Option<OsImageFacts>, InspectError> {
    let mut head = [0u8; 4096];
    let mut file = std::fs::File::open(path)?;
    let mut read = 0;
    while read < head.len() {
        match file.read(&mut head[read..])? {
            0 => break,
            n => read += n,
        }
    }
    let head = &head[..read];
    if looks_multipart(head) {
        return Err(not(
            kind_label(kind),
            "it is a multipart form body; send the file itself as the body",
        ));
    }
    match kind {
        BootResourceKind::Kernel => {
            let x86 = head.get(0x202..0x206) == Some(b"HdrS");
            let arm64 = head.get(0x38..0x3c) == Some(b"ARM\x64");
            let efi_stub = head.starts_with(b"MZ");
            if !(x86 || arm64 || efi_stub) {
                return Err(not(
                    "kernel",
                    "no Linux boot header (HdrS at 0x202, ARMd at 0x38) and no PE header",
                ));
            }
            Ok(None)
        }
        BootResourceKind::Initrd => {
            const MAGICS: [&[u8]; 7] = [
                b"\x1f\x8b",
                b"\x28\xb5\x2f\xfd",
                b"\xfd7zXZ\x00",
                b"070701",
                b"070702",
                b"\x02\x21\x4c\x18",
                b"BZh",
            ];
            if !MAGICS.iter().any(|m| head.starts_with(m)) {
                return Err(not(
                    "initrd",
                    "neither cpio nor gzip, zstd, xz, lz4 or bzip2",
                ));
            }
            Ok(None)
        }
        BootResourceKind::Squashfs => {
            if !head.starts_with(b"hsqs") {
                return Err(not("squashfs", "no squashfs superblock"));
            }
            Ok(None)
        }
        BootResourceKind::Rootfs => rootfs(path).map(Some),
        // The operator's own files: served as they are, whatever they hold.
        BootResourceKind::File => Ok(None),
    }
}

fn kind_label(kind: BootResourceKind) -> &'static str {
    crate::store::kind_name(kind)
}

fn looks_multipart(head: &[u8]) -> bool {
    let text = String::from_utf8_lossy(&head[..head.len().min(512)]);
    text.starts_with("--") && text.to_ascii_lowercase().contains("content-disposition:")
}

/// Reads a `tar.zst` OS image through: its unpacked size, and that it
/// holds what the installer needs.
fn rootfs(path: &Path) -> Result<OsImageFacts, InspectError> {
    let file = std::fs::File::open(path)?;
    let decoder = zstd::stream::read::Decoder::new(file)
        .map_err(|e| not("rootfs", format!("not zstd: {e}")))?;
    let mut counted = Counting {
        inner: decoder,
        bytes: 0,
    };
    let mut found = [false; REQUIRED.len()];
    {
        let mut archive = tar::Archive::new(&mut counted);
        let entries = archive
            .entries()
            .map_err(|e| not("rootfs", format!("not a tar archive: {e}")))?;
        for entry in entries {
            let entry = entry.map_err(|e| not("rootfs", format!("a broken tar archive: {e}")))?;
            let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let name = name.trim_start_matches("./");
            for (i, (prefix, _)) in REQUIRED.iter().enumerate() {
                found[i] |= name.starts_with(prefix);
            }
        }
    }
    // The rest of the stream (tar's end blocks and padding) counts too.
    std::io::copy(&mut counted, &mut std::io::sink())
        .map_err(|e| not("rootfs", format!("a broken zstd stream: {e}")))?;
    if counted.bytes == 0 {
        return Err(not("rootfs", "an empty archive"));
    }
    if let Some(i) = found.iter().position(|f| !f) {
        return Err(not(
            "rootfs",
            format!("the archive has no {} ({})", REQUIRED[i].0, REQUIRED[i].1),
        ));
    }
    Ok(OsImageFacts {
        format: "tar.zst".into(),
        uncompressed_bytes: counted.bytes,
    })
}

/// A reader that counts what passes through.
struct Counting<R> {
    inner: R,
    bytes: u64,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    fn tar_zst(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, data) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            builder.append_data(&mut header, name, *data).unwrap();
        }
        let tar = builder.into_inner().unwrap();
        zstd::stream::encode_all(&tar[..], 3).unwrap()
    }

    #[test]
    fn a_multipart_body_is_refused_whatever_the_kind() {
        let dir = tempfile::tempdir().unwrap();
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"vmlinuz\"\r\n\r\nMZ...";
        let path = write(dir.path(), "upload", body);
        for kind in [
            BootResourceKind::Kernel,
            BootResourceKind::Initrd,
            BootResourceKind::Rootfs,
        ] {
            let error = inspect(kind, &path).unwrap_err().to_string();
            assert!(error.contains("multipart"), "{error}");
        }
    }

    #[test]
    fn each_kind_has_its_signature() {
        let dir = tempfile::tempdir().unwrap();
        let mut kernel = vec![0u8; 0x300];
        kernel[0x202..0x206].copy_from_slice(b"HdrS");
        assert!(inspect(BootResourceKind::Kernel, &write(dir.path(), "k", &kernel)).is_ok());
        assert!(inspect(BootResourceKind::Kernel, &write(dir.path(), "h", b"<html>")).is_err());
        assert!(inspect(
            BootResourceKind::Initrd,
            &write(dir.path(), "i", b"\x1f\x8b\x08")
        )
        .is_ok());
        assert!(inspect(BootResourceKind::Initrd, &write(dir.path(), "j", b"hello")).is_err());
        assert!(inspect(
            BootResourceKind::Squashfs,
            &write(dir.path(), "s", b"hsqs....")
        )
        .is_ok());
    }

    #[test]
    fn an_os_image_is_read_through_and_must_hold_a_kernel_and_grub() {
        let dir = tempfile::tempdir().unwrap();
        let good = tar_zst(&[
            ("./boot/vmlinuz-6.1.0-amd64", b"kernel"),
            ("./usr/sbin/grub-install", b"#!grub"),
        ]);
        let facts = inspect(BootResourceKind::Rootfs, &write(dir.path(), "good", &good))
            .unwrap()
            .unwrap();
        assert_eq!(facts.format, "tar.zst");
        // Three 512-byte headers-and-data pairs' worth plus the end blocks.
        assert!(facts.uncompressed_bytes >= 4 * 512, "{facts:?}");
        let no_grub = tar_zst(&[("./boot/vmlinuz", b"kernel")]);
        let error = inspect(
            BootResourceKind::Rootfs,
            &write(dir.path(), "nogrub", &no_grub),
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("grub-install"), "{error}");
        let not_zstd = write(dir.path(), "gz", b"\x1f\x8b\x08\x00");
        assert!(inspect(BootResourceKind::Rootfs, &not_zstd).is_err());
        let truncated = write(dir.path(), "cut", &good[..good.len() / 2]);
        assert!(inspect(BootResourceKind::Rootfs, &truncated).is_err());
    }
}
