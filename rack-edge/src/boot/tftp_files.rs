//! What the TFTP server serves: per-machine PXELINUX and GRUB files
//! generated from the boot decisions, the cached boot resources, and the
//! iPXE binaries firmware chain-loads.
//!
//! TFTP opens files synchronously, so the generated files use the decision
//! the rack remembers and ask the region for a fresh one in the background
//! (the next fetch sees it); the iPXE path, which most machines take, asks
//! the region first.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use edgemetal_protocol::{Ipv4Cidr, MacAddress};

use super::cache::BootCache;
use super::decisions::Decisions;
use super::render;
use crate::tftp::{DirSource, FileSource, NormalisedPath, OpenError, TftpFile};

/// The rack's TFTP files.
pub struct TftpFiles {
    /// Verified boot resources.
    pub cache: BootCache,
    /// Per-machine decisions.
    pub decisions: Arc<Decisions>,
    /// The iPXE binaries.
    pub binaries: DirSource,
    /// The operator's boot files (`files/<path>`).
    pub table: super::table::BootTable,
    /// The rack's addresses with their networks, to tell a machine which
    /// rack address to reach (the one on its own network).
    pub addresses: Vec<(Ipv4Cidr, std::net::Ipv4Addr)>,
    /// Port of the HTTP boot server.
    pub http_port: u16,
}

/// `01-52-54-00-12-34-56` (PXELINUX's form: ARP type 1, then the MAC).
fn pxelinux_mac(name: &str) -> Option<MacAddress> {
    name.strip_prefix("01-")?.parse().ok()
}

impl TftpFiles {
    fn rack_url(&self, peer: SocketAddr) -> String {
        let address = match peer.ip() {
            IpAddr::V4(peer) => self
                .addresses
                .iter()
                .find(|(network, _)| network.contains(peer))
                .or(self.addresses.first())
                .map(|(_, address)| *address),
            IpAddr::V6(_) => self.addresses.first().map(|(_, address)| *address),
        };
        let host = address.map_or_else(|| "127.0.0.1".to_string(), |a| a.to_string());
        format!("http://{host}:{}", self.http_port)
    }

    fn generated(&self, path: &NormalisedPath, peer: SocketAddr) -> Option<String> {
        let parts: Vec<&str> = path.components().collect();
        let (render, mac): (fn(&_, &str, MacAddress) -> String, MacAddress) = match parts.as_slice()
        {
            ["pxelinux.cfg", name] => (render::pxelinux_config, pxelinux_mac(name)?),
            [name] | ["grub", name] => (
                render::grub_config,
                name.strip_prefix("grub.cfg-")?.parse().ok()?,
            ),
            _ => return None,
        };
        Some(render(
            &self.decisions.decide_now(mac, None),
            &self.rack_url(peer),
            mac,
        ))
    }
}

impl FileSource for TftpFiles {
    fn open(&self, path: &NormalisedPath, peer: SocketAddr) -> Result<TftpFile, OpenError> {
        if let Some(text) = self.generated(path, peer) {
            return Ok(TftpFile::from_bytes(text.into_bytes()));
        }
        let parts: Vec<&str> = path.components().collect();
        let held = match parts.as_slice() {
            ["boot", "resources", sha256] => {
                let mut sha = [0u8; 32];
                hex::decode_to_slice(sha256, &mut sha).map_err(|_| OpenError::NotFound)?;
                Some(sha)
            }
            ["files", tree @ ..] if !tree.is_empty() => Some(
                self.table
                    .file(&tree.join("/"))
                    .ok_or(OpenError::NotFound)?,
            ),
            _ => None,
        };
        if let Some(sha) = held {
            let ready = self.cache.ready_path(&sha).ok_or(OpenError::NotFound)?;
            let file = std::fs::File::open(ready)?;
            let len = file.metadata()?.len();
            return Ok(TftpFile::Disk { file, len });
        }
        self.binaries.open(path, peer)
    }
}
