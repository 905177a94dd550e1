//! The region's own certificate authority, made on first start, so that the
//! one-command default runs the broker link over TLS. Racks receive the CA
//! certificate at enrolment and verify the broker against it.

use std::path::{Path, PathBuf};

use anyhow::Context;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};

/// Paths of the generated files.
#[derive(Debug, Clone)]
pub struct Pki {
    /// CA certificate (PEM), handed to racks.
    pub ca_cert: PathBuf,
    /// Broker certificate (PEM), signed by the CA.
    pub server_cert: PathBuf,
    /// Broker private key (PEM).
    pub server_key: PathBuf,
}

impl Pki {
    /// The CA certificate as PEM text.
    pub fn ca_pem(&self) -> anyhow::Result<String> {
        std::fs::read_to_string(&self.ca_cert)
            .with_context(|| format!("cannot read {}", self.ca_cert.display()))
    }
}

/// Loads the PKI in `data_dir/pki`, creating a CA and a server certificate
/// for `names` (DNS names or IP addresses) when absent.
pub fn ensure(data_dir: &Path, names: &[String]) -> anyhow::Result<Pki> {
    let dir = data_dir.join("pki");
    let pki = Pki {
        ca_cert: dir.join("ca.crt"),
        server_cert: dir.join("server.crt"),
        server_key: dir.join("server.key"),
    };
    if pki.ca_cert.exists() && pki.server_cert.exists() && pki.server_key.exists() {
        return Ok(pki);
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;

    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "edgemetal region CA");
    let ca_cert = ca_params.self_signed(&ca_key)?;

    let server_key = KeyPair::generate()?;
    let mut server_params = CertificateParams::new(names.to_vec())?;
    server_params
        .distinguished_name
        .push(DnType::CommonName, "edgemetal broker");
    let server_cert = server_params.signed_by(&server_key, &ca_cert, &ca_key)?;

    write_private(&dir.join("ca.key"), &ca_key.serialize_pem())?;
    write_private(&pki.server_key, &server_key.serialize_pem())?;
    std::fs::write(&pki.server_cert, server_cert.pem())?;
    std::fs::write(&pki.ca_cert, ca_cert.pem())?;
    tracing::info!(dir = %dir.display(), ?names, "created the region CA and broker certificate");
    Ok(pki)
}

fn write_private(path: &Path, pem: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(pem.as_bytes())?;
    Ok(())
}
