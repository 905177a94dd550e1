//! What a deploy request must satisfy before anything changes: pure checks
//! over the request, the machine's inventory and the image's facts. The
//! service reads those, runs these rules, and only then starts the run.

use super::inventory::Disk;

/// Largest cloud-init user data accepted (as MAAS and cloud providers cap it).
pub const MAX_USER_DATA_BYTES: usize = 64 * 1024;
/// Most SSH keys in one request.
pub const MAX_SSH_KEYS: usize = 32;
/// What the installer lays out besides the root filesystem: the BIOS boot
/// partition, the ESP and GPT's own space.
pub const LAYOUT_OVERHEAD_BYTES: u64 = 130 * 1024 * 1024;

/// Why a deploy request is refused; each names what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeployRuleError {
    /// The user data is over [`MAX_USER_DATA_BYTES`].
    #[error("user_data is {0} bytes; at most {MAX_USER_DATA_BYTES} are accepted")]
    UserDataTooLarge(usize),
    /// An SSH key is not `type base64 [comment]` of a known type.
    #[error("ssh_keys[{index}] is not an OpenSSH public key: {why}")]
    BadSshKey {
        /// Which key.
        index: usize,
        /// What is wrong with it.
        why: &'static str,
    },
    /// More than [`MAX_SSH_KEYS`] keys.
    #[error("at most {MAX_SSH_KEYS} ssh_keys are accepted")]
    TooManyKeys,
    /// The host name is not one RFC 1123 label.
    #[error("hostname {0:?} is not a host name: use 1 to 63 of a-z, 0-9 and '-', not starting or ending with '-'")]
    BadHostname(String),
    /// No disk of the inventory has that serial.
    #[error("the machine has no disk with serial {0:?} (commissioning found: {1})")]
    UnknownDisk(String, String),
    /// The inventory has no disk to install to.
    #[error("commissioning found no non-removable disk to install to")]
    NoDisk,
    /// The disk cannot hold the image.
    #[error("disk {disk} ({have} bytes) is smaller than the image needs ({need} bytes)")]
    DiskTooSmall {
        /// The disk's name.
        disk: String,
        /// Its size.
        have: u64,
        /// What the image and layout need.
        need: u64,
    },
}

/// Checks the user data's size.
pub fn check_user_data(user_data: &str) -> Result<(), DeployRuleError> {
    if user_data.len() > MAX_USER_DATA_BYTES {
        return Err(DeployRuleError::UserDataTooLarge(user_data.len()));
    }
    Ok(())
}

const KEY_TYPES: [&str; 7] = [
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];

/// Checks each key is one line of `type base64 [comment]` with a known type
/// whose base64 blob names the same type (as `ssh-keygen -l` would).
pub fn check_ssh_keys(keys: &[String]) -> Result<(), DeployRuleError> {
    if keys.len() > MAX_SSH_KEYS {
        return Err(DeployRuleError::TooManyKeys);
    }
    for (index, key) in keys.iter().enumerate() {
        let bad = |why| DeployRuleError::BadSshKey { index, why };
        if key.contains(['\n', '\r']) || key.len() > 16 * 1024 {
            return Err(bad("it must be one line"));
        }
        let mut parts = key.split_whitespace();
        let kind = parts.next().ok_or(bad("it is empty"))?;
        if !KEY_TYPES.contains(&kind) {
            return Err(bad("unknown key type"));
        }
        let blob = parts.next().ok_or(bad("no key after the type"))?;
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(blob)
            .map_err(|_| bad("the key is not base64"))?;
        // The blob starts with the type as an SSH string: u32 length, bytes.
        let named = bytes
            .get(..4)
            .map(|len| u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize)
            .and_then(|len| bytes.get(4..4 + len));
        if named != Some(kind.as_bytes()) {
            return Err(bad("the key's blob is not of the type it claims"));
        }
    }
    Ok(())
}

/// Checks a host name is one RFC 1123 label (lowercase).
pub fn check_hostname(hostname: &str) -> Result<(), DeployRuleError> {
    let ok = !hostname.is_empty()
        && hostname.len() <= 63
        && !hostname.starts_with('-')
        && !hostname.ends_with('-')
        && hostname
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(DeployRuleError::BadHostname(hostname.to_string()))
    }
}

/// The disk to install to: the one with `serial`, or else the boot disk
/// (the first non-removable disk by name, as MAAS picks it).
pub fn choose_disk<'a>(
    disks: &'a [Disk],
    serial: Option<&str>,
) -> Result<&'a Disk, DeployRuleError> {
    match serial {
        Some(serial) => disks
            .iter()
            .find(|d| d.serial.as_deref() == Some(serial))
            .ok_or_else(|| {
                let known: Vec<String> = disks
                    .iter()
                    .map(|d| {
                        format!(
                            "{} {}",
                            d.name,
                            d.serial.as_deref().unwrap_or("(no serial)")
                        )
                    })
                    .collect();
                DeployRuleError::UnknownDisk(serial.to_string(), known.join(", "))
            }),
        None => disks
            .iter()
            .filter(|d| d.removable != Some(true) && d.size_bytes > 0)
            .min_by(|a, b| a.name.cmp(&b.name))
            .ok_or(DeployRuleError::NoDisk),
    }
}

/// What a disk needs to hold an image of `uncompressed_bytes`: the files,
/// a tenth more for the filesystem's own blocks, and the layout.
pub fn bytes_needed(uncompressed_bytes: u64) -> u64 {
    uncompressed_bytes
        .saturating_add(uncompressed_bytes / 10)
        .saturating_add(LAYOUT_OVERHEAD_BYTES)
}

/// Checks `disk` can hold an image of `uncompressed_bytes`.
pub fn check_disk_fits(disk: &Disk, uncompressed_bytes: u64) -> Result<(), DeployRuleError> {
    let need = bytes_needed(uncompressed_bytes);
    if disk.size_bytes < need {
        return Err(DeployRuleError::DiskTooSmall {
            disk: disk.name.clone(),
            have: disk.size_bytes,
            need,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disk(name: &str, serial: Option<&str>, size: u64, removable: bool) -> Disk {
        Disk {
            name: name.into(),
            size_bytes: size,
            serial: serial.map(Into::into),
            removable: Some(removable),
            ..Disk::default()
        }
    }

    #[test]
    fn ssh_keys_must_be_what_they_claim() {
        // A real ed25519 key (ssh-keygen -t ed25519).
        let good = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBEz1D7a+Cmjkhfs+lhBXCC1afjjiPzWlPAowqUjIO8/ me@host";
        assert_eq!(check_ssh_keys(&[good.into()]), Ok(()));
        let wrong_type = good.replacen("ssh-ed25519", "ssh-rsa", 1);
        assert!(check_ssh_keys(&[wrong_type]).is_err());
        assert!(check_ssh_keys(&["ssh-ed25519 not-base64!".into()]).is_err());
        assert!(check_ssh_keys(&["ssh-dss AAAA".into()]).is_err());
        assert!(check_ssh_keys(&[format!("{good}\nssh-ed25519 x")]).is_err());
        assert!(check_ssh_keys(&vec![good.to_string(); 33]).is_err());
    }

    #[test]
    fn hostnames_are_labels() {
        assert!(check_hostname("web-1").is_ok());
        for bad in ["", "-a", "a-", "Web", "a.b", &"a".repeat(64)] {
            assert!(check_hostname(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_boot_disk_is_the_first_fixed_one_and_a_serial_must_exist() {
        let disks = [
            disk("sdb", Some("B"), 10 << 30, false),
            disk("sda", Some("USB"), 8 << 30, true),
            disk("vda", Some("A"), 4 << 30, false),
        ];
        assert_eq!(choose_disk(&disks, None).unwrap().name, "sdb");
        assert_eq!(choose_disk(&disks, Some("A")).unwrap().name, "vda");
        let error = choose_disk(&disks, Some("nope")).unwrap_err();
        assert!(error.to_string().contains("vda A"), "{error}");
        assert_eq!(choose_disk(&[], None), Err(DeployRuleError::NoDisk));
    }

    #[test]
    fn a_disk_must_hold_the_image_and_the_layout() {
        let small = disk("vda", None, 1 << 30, false);
        assert!(check_disk_fits(&small, 850 << 20).is_err());
        assert!(check_disk_fits(&small, 700 << 20).is_ok());
        assert!(check_user_data(&"x".repeat(MAX_USER_DATA_BYTES)).is_ok());
        assert!(check_user_data(&"x".repeat(MAX_USER_DATA_BYTES + 1)).is_err());
    }
}
