//! The operator's boot table as the API takes it, and the rules it must
//! follow before it reaches a rack: an iPXE script that starts with
//! `#!ipxe` or an http(s) URL (not both), and for each firmware slot a file
//! the rack can serve, a shipped iPXE binary or one from the boot-files
//! tree. Subnets carry one, machines one that overrides it field by field.

use std::collections::BTreeMap;

use edgemetal_protocol::{BootSettings, IpxeScript, Loader, LoaderSlot, BOOT_FILES_PREFIX};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ipam::RuleError;

/// The largest script the rack serves (iPXE scripts are a few lines).
pub const MAX_SCRIPT_BYTES: usize = 64 * 1024;
/// The longest URL or file name: it travels in DHCP option 67.
pub const MAX_NAME_BYTES: usize = 255;
/// Boot files are at most this deep in the tree.
pub const MAX_FILE_DEPTH: usize = 8;

/// Boot settings of a subnet or a machine; empty means the rack's defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct BootSettingsSpec {
    /// An iPXE script run instead of the generated one; starts with `#!ipxe`.
    /// `${next-server}` is the rack's address on the machine's network.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipxe_script: Option<String>,
    /// An http or https URL iPXE loads its script from instead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipxe_url: Option<String>,
    /// The network bootstrap program per firmware slot (`bios`, `uefi-x64`,
    /// `uefi-arm64`, `uefi-x64-http`, `uefi-arm64-http`): a shipped iPXE
    /// binary such as `ipxe.efi` or `snponly.efi`, or `files/<path>` from
    /// the boot-files tree.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub loaders: BTreeMap<String, String>,
}

/// Whether a subnet's racks answer IPv6 Router Solicitations.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RouterAdvertisementMode {
    /// Answer with "not a router" (lifetime 0), so that boot firmware stops
    /// waiting for IPv6 on an IPv4-only link.
    #[default]
    NotARouter,
    /// Stay silent: a real IPv6 router serves the link.
    Off,
}

impl From<RouterAdvertisementMode> for edgemetal_protocol::RouterAdvertisements {
    fn from(mode: RouterAdvertisementMode) -> Self {
        match mode {
            RouterAdvertisementMode::NotARouter => Self::NotARouter,
            RouterAdvertisementMode::Off => Self::Off,
        }
    }
}

fn invalid(message: String) -> RuleError {
    RuleError::Invalid(message)
}

/// A name that needs no quoting anywhere: letters, digits, `.`, `_`, `-`,
/// and not a dot file (so never `.` or `..`).
fn plain_component(part: &str) -> bool {
    !part.is_empty()
        && !part.starts_with('.')
        && part
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// A boot file's path in the tree: up to [`MAX_FILE_DEPTH`] plain
/// components separated by `/`.
pub fn valid_file_path(path: &str) -> bool {
    path.len() <= MAX_NAME_BYTES - BOOT_FILES_PREFIX.len()
        && path.split('/').count() <= MAX_FILE_DEPTH
        && path.split('/').all(plain_component)
}

/// A loader the rack can serve: a shipped binary (a plain file name) or a
/// boot file.
fn valid_loader(file: &str) -> bool {
    match file.strip_prefix(BOOT_FILES_PREFIX) {
        Some(path) => valid_file_path(path),
        None => file.len() <= MAX_NAME_BYTES && plain_component(file),
    }
}

fn valid_url(url: &str) -> bool {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    url.len() <= MAX_NAME_BYTES
        && rest.is_some_and(|rest| {
            let host = rest.split(['/', '?', '#']).next().unwrap_or("");
            !host.is_empty()
        })
        && url.bytes().all(|b| b.is_ascii_graphic())
}

impl BootSettingsSpec {
    /// Checks the settings; the error says what to change.
    pub fn validate(&self) -> Result<(), RuleError> {
        if self.ipxe_script.is_some() && self.ipxe_url.is_some() {
            return Err(invalid(
                "give ipxe_script or ipxe_url, not both".to_string(),
            ));
        }
        if let Some(script) = &self.ipxe_script {
            if !script.starts_with("#!ipxe") {
                return Err(invalid("ipxe_script must start with #!ipxe".to_string()));
            }
            if script.len() > MAX_SCRIPT_BYTES {
                return Err(invalid(format!(
                    "ipxe_script is {} bytes; at most {MAX_SCRIPT_BYTES}",
                    script.len()
                )));
            }
        }
        if let Some(url) = &self.ipxe_url {
            if !valid_url(url) {
                return Err(invalid(format!(
                    "ipxe_url {url:?} must be an http:// or https:// URL with a host, \
                     without spaces, at most {MAX_NAME_BYTES} bytes"
                )));
            }
        }
        for (slot, file) in &self.loaders {
            if LoaderSlot::from_name(slot).is_none() {
                let names: Vec<&str> = LoaderSlot::ALL.iter().map(|s| s.name()).collect();
                return Err(invalid(format!(
                    "unknown loader slot {slot:?}: use one of {}",
                    names.join(", ")
                )));
            }
            if !valid_loader(file) {
                return Err(invalid(format!(
                    "loader {file:?} for {slot} must be a shipped iPXE binary's file name \
                     (e.g. ipxe.efi, snponly.efi) or files/<path> from the boot-files tree"
                )));
            }
        }
        Ok(())
    }

    /// The settings as racks get them (after [`BootSettingsSpec::validate`];
    /// unknown slots are skipped).
    pub fn to_protocol(&self) -> BootSettings {
        let ipxe = match (&self.ipxe_script, &self.ipxe_url) {
            (Some(script), _) => Some(IpxeScript::Contents(script.clone())),
            (None, Some(url)) => Some(IpxeScript::Url(url.clone())),
            (None, None) => None,
        };
        let loaders = self
            .loaders
            .iter()
            .filter_map(|(slot, file)| {
                Some(Loader {
                    slot: LoaderSlot::from_name(slot)?,
                    file: file.clone(),
                })
            })
            .collect();
        BootSettings { ipxe, loaders }
    }

    /// Whether nothing is set.
    pub fn is_empty(&self) -> bool {
        self.ipxe_script.is_none() && self.ipxe_url.is_none() && self.loaders.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: serde_json::Value) -> BootSettingsSpec {
        serde_json::from_value(json).unwrap()
    }

    fn error(json: serde_json::Value) -> String {
        spec(json).validate().unwrap_err().to_string()
    }

    #[test]
    fn good_settings_pass_and_reach_the_rack_as_written() {
        let settings = spec(serde_json::json!({
            "ipxe_script": "#!ipxe\nchain http://${next-server}:5248/files/menu.ipxe\n",
            "loaders": {"uefi-x64": "ipxe.efi", "bios": "files/site/undionly.kpxe"}
        }));
        settings.validate().unwrap();
        let wire = settings.to_protocol();
        assert!(matches!(wire.ipxe, Some(IpxeScript::Contents(ref s)) if s.starts_with("#!ipxe")));
        assert_eq!(wire.loader(LoaderSlot::UefiX64), Some("ipxe.efi"));
        assert_eq!(
            wire.loader(LoaderSlot::Bios),
            Some("files/site/undionly.kpxe")
        );
        let url = spec(serde_json::json!({"ipxe_url": "https://boot.example/x.ipxe"}));
        url.validate().unwrap();
        assert!(BootSettingsSpec::default().to_protocol().is_empty());
    }

    #[test]
    fn what_the_rack_could_not_serve_is_refused_with_a_reason() {
        assert!(error(serde_json::json!({"ipxe_script": "echo hi"})).contains("#!ipxe"));
        assert!(error(serde_json::json!({"ipxe_url": "ftp://x/y"})).contains("http"));
        assert!(error(serde_json::json!({"ipxe_url": "http:///y"})).contains("host"));
        assert!(error(serde_json::json!({"ipxe_url": "http://x/a b"})).contains("spaces"));
        assert!(error(serde_json::json!({
            "ipxe_script": "#!ipxe\n", "ipxe_url": "http://x/y"
        }))
        .contains("not both"));
        assert!(error(serde_json::json!({"loaders": {"uefi": "ipxe.efi"}})).contains("slot"));
        for file in [
            "../etc/passwd",
            "files/../x",
            "a/b.efi",
            ".hidden",
            "files/",
            "",
        ] {
            assert!(
                error(serde_json::json!({"loaders": {"bios": file}})).contains("loader"),
                "{file:?}"
            );
        }
        let long = format!("#!ipxe\n{}", "x".repeat(MAX_SCRIPT_BYTES));
        assert!(error(serde_json::json!({ "ipxe_script": long })).contains("bytes"));
        assert!(
            serde_json::from_value::<BootSettingsSpec>(serde_json::json!({"ipxe": 1})).is_err()
        );
    }

    #[test]
    fn boot_file_paths_stay_inside_the_tree() {
        assert!(valid_file_path("menu.ipxe"));
        assert!(valid_file_path("site-a/uefi/shim.efi"));
        for path in ["", "/abs", "a//b", "a/../b", "..", "a/.b", "a b", "a\\b"] {
            assert!(!valid_file_path(path), "{path:?}");
        }
        assert!(!valid_file_path(&["a"; MAX_FILE_DEPTH + 1].join("/")));
    }
}
