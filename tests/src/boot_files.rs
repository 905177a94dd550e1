//! Boot resources for tests: deterministic content, uploaded through the
//! region's API, fetched back with curl as a machine would.

use std::process::Command;

use reqwest::StatusCode;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::ApiClient;

/// `len` bytes of deterministic, incompressible-looking content.
pub fn content(len: usize, seed: u8) -> Vec<u8> {
    let mut bytes: Vec<u8> = (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[1] ^ seed)
        .collect();
    // The region checks each upload is the kind it claims: this content
    // starts as a newc cpio archive (an initrd) and carries a Linux boot
    // header (a kernel), so it passes as either.
    let cpio = b"070701";
    bytes[..cpio.len().min(len)].copy_from_slice(&cpio[..cpio.len().min(len)]);
    if len >= 0x206 {
        bytes[0x202..0x206].copy_from_slice(b"HdrS");
    }
    bytes
}

/// Uploads `bytes` as the amd64 ephemeral image's `kind`; returns the record.
pub async fn upload(api: &ApiClient, kind: &str, bytes: &[u8]) -> Value {
    let sha = hex::encode(Sha256::digest(bytes));
    let (status, body) = api
        .upload(
            &format!("/api/v1/boot-resources?name=ephemeral&architecture=amd64&kind={kind}"),
            bytes.to_vec(),
            &[("x-content-sha256", &sha)],
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["sha256"], sha.as_str());
    body
}

/// `curl -sS --fail` with `args`; the body, or a panic with curl's error.
pub fn curl(args: &[&str]) -> Vec<u8> {
    let output = Command::new("curl")
        .args(["-sS", "--fail", "--max-time", "30"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// The iPXE script the rack at `http` serves machine `mac`.
pub fn ipxe_script(http: std::net::SocketAddr, mac: &str) -> String {
    String::from_utf8(curl(&[&format!("http://{http}/boot/ipxe/{mac}.ipxe")])).unwrap()
}

/// An enrolled rack serving HTTP and TFTP boot on loopback, reaching the
/// broker at `broker_url` (e.g. through a [`crate::Wan`]) and speaking
/// link protocol `protocol`.
pub struct BootRack {
    /// The rack process.
    pub process: crate::RackProcess,
    /// Its HTTP boot server.
    pub http: std::net::SocketAddr,
    /// Its TFTP server.
    pub tftp: std::net::SocketAddr,
}

impl BootRack {
    /// Enrols `name` with `region` (state under `data`) and starts it.
    pub async fn start(
        region: &crate::RegionProcess,
        name: &str,
        data: &std::path::Path,
        logs: &std::path::Path,
        broker_url: &str,
        protocol: &str,
    ) -> BootRack {
        let state = data.join(name);
        region.enrol_rack(name, &state).await;
        let http = crate::ports::free_loopback();
        let tftp = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let process = crate::RackProcess::start_with(
            &state,
            &logs.join(format!("{name}.log")),
            &[
                "--broker-url",
                broker_url,
                "--http-boot-listen",
                &http.to_string(),
                "--tftp-listen",
                &tftp.to_string(),
                "--protocol-version",
                protocol,
            ],
        )
        .await;
        BootRack {
            process,
            http,
            tftp,
        }
    }
}
