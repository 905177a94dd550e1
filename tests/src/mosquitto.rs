//! A throwaway Mosquitto broker on a free loopback port.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::{packages, ports};

/// A running Mosquitto, killed on drop.
pub struct Mosquitto {
    child: Child,
    address: SocketAddr,
    _dir: TempDir,
}

/// The files a secured Mosquitto reads and the region maintains.
pub struct SecuredFiles {
    /// Password file (written by the region with mosquitto_passwd).
    pub password_file: PathBuf,
    /// ACL file (written by the region).
    pub acl_file: PathBuf,
    /// Mosquitto's pid file (the region sends SIGHUP after changes).
    pub pid_file: PathBuf,
}

impl Mosquitto {
    /// Starts Mosquitto with anonymous access; installs it if missing.
    pub fn start() -> Mosquitto {
        Self::launch(|_| String::from("allow_anonymous true\n"), false).0
    }

    /// Starts Mosquitto as production runs it: TLS with the region's
    /// certificate (from `pki_dir`), no anonymous access, and the password and
    /// ACL files the region keeps current.
    pub fn start_secured(pki_dir: &Path) -> (Mosquitto, SecuredFiles) {
        let pki = pki_dir.to_path_buf();
        let (mosquitto, files) = Self::launch(
            move |dir| {
                format!(
                    "allow_anonymous false\npassword_file {dir}/passwd\nacl_file {dir}/acl\n\
                     pid_file {dir}/mosquitto.pid\ncafile {pki}/ca.crt\ncertfile {pki}/server.crt\n\
                     keyfile {pki}/server.key\n",
                    dir = dir.display(),
                    pki = pki.display()
                )
            },
            true,
        );
        (mosquitto, files.expect("secured files"))
    }

    fn launch(
        settings: impl FnOnce(&Path) -> String,
        secured: bool,
    ) -> (Mosquitto, Option<SecuredFiles>) {
        packages::ensure("/usr/sbin/mosquitto", "mosquitto");
        packages::ensure("/usr/bin/mosquitto_pub", "mosquitto-clients");
        let dir = tempfile::Builder::new()
            .prefix("edgemetal-mqtt")
            .tempdir()
            .expect("temp dir");
        let address = ports::free_loopback();
        let files = secured.then(|| SecuredFiles {
            password_file: dir.path().join("passwd"),
            acl_file: dir.path().join("acl"),
            pid_file: dir.path().join("mosquitto.pid"),
        });
        if let Some(files) = &files {
            // Empty to start with; the region fills them and signals a reload.
            std::fs::write(&files.password_file, b"").expect("passwd");
            std::fs::write(&files.acl_file, b"").expect("acl");
        }
        let config = dir.path().join("mosquitto.conf");
        std::fs::write(
            &config,
            format!(
                // user root: stay root so the files in our 0700 temp dirs stay readable.
                "user root\nlistener {} {}\npersistence false\nlog_dest stderr\n{}",
                address.port(),
                address.ip(),
                settings(dir.path())
            ),
        )
        .expect("write mosquitto.conf");
        let log = std::fs::File::create(dir.path().join("mosquitto.log")).expect("log file");
        let child = Command::new("/usr/sbin/mosquitto")
            .arg("-c")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start mosquitto");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(address).is_err() {
            assert!(
                Instant::now() < deadline,
                "mosquitto did not start on {address}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        (
            Mosquitto {
                child,
                address,
                _dir: dir,
            },
            files,
        )
    }

    /// The TLS broker URL for region and racks.
    pub fn tls_url(&self) -> String {
        format!("mqtts://{}", self.address)
    }

    /// The broker URL for region and racks.
    pub fn url(&self) -> String {
        format!("mqtt://{}", self.address)
    }

    /// The broker's address.
    pub fn address(&self) -> SocketAddr {
        self.address
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How a `mosquitto_pub` / `mosquitto_sub` client logs in.
#[derive(Default, Clone)]
pub struct ClientLogin {
    /// User name and password.
    pub credentials: Option<(String, String)>,
    /// CA file to verify a TLS broker (enables TLS).
    pub cafile: Option<PathBuf>,
    /// Client id.
    pub client_id: Option<String>,
    /// Connect by this name instead of the broker's IP. OpenSSL clients send
    /// an IP address as SNI, which rustls servers (the embedded broker) refuse.
    pub host: Option<String>,
}

impl ClientLogin {
    fn args(&self, broker: SocketAddr) -> Vec<String> {
        let host = self.host.clone().unwrap_or_else(|| broker.ip().to_string());
        let mut args = vec![
            "-h".to_string(),
            host,
            "-p".to_string(),
            broker.port().to_string(),
        ];
        if let Some((user, password)) = &self.credentials {
            args.extend([
                "-u".to_string(),
                user.clone(),
                "-P".to_string(),
                password.clone(),
            ]);
        }
        if let Some(cafile) = &self.cafile {
            args.extend(["--cafile".to_string(), cafile.display().to_string()]);
        }
        if let Some(id) = &self.client_id {
            args.extend(["-i".to_string(), id.clone()]);
        }
        args
    }
}

/// Publishes raw bytes with `mosquitto_pub`, as an outsider on the broker would.
pub fn publish_raw(broker: SocketAddr, topic: &str, payload: &[u8]) {
    assert!(
        publish_as(broker, &ClientLogin::default(), topic, payload),
        "mosquitto_pub to {topic} failed"
    );
}

/// Publishes with a given login; returns whether mosquitto_pub succeeded.
pub fn publish_as(broker: SocketAddr, login: &ClientLogin, topic: &str, payload: &[u8]) -> bool {
    packages::ensure("/usr/bin/mosquitto_pub", "mosquitto-clients");
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), payload).expect("write payload");
    Command::new("/usr/bin/mosquitto_pub")
        .args(login.args(broker))
        .args(["-q", "1", "-t", topic, "-f"])
        .arg(file.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Subscribes to `filter` for `seconds` and returns every payload received
/// (verbose mode: "topic payload" lines), or None if the login failed.
pub fn subscribe_for(
    broker: SocketAddr,
    login: &ClientLogin,
    filter: &str,
    seconds: u32,
) -> Option<Vec<u8>> {
    packages::ensure("/usr/bin/mosquitto_sub", "mosquitto-clients");
    let output = Command::new("/usr/bin/mosquitto_sub")
        .args(login.args(broker))
        .args(["-v", "-t", filter, "-W", &seconds.to_string()])
        .output()
        .expect("run mosquitto_sub");
    // -W ends with exit code 27 (timeout); a refused login is another code.
    match output.status.code() {
        Some(0) | Some(27) => Some(output.stdout),
        _ => None,
    }
}

/// Waits (up to 20 s) for one payload on `topic` — a retained one arrives at
/// once — and returns its bytes, as an eavesdropper on the broker gets them.
pub fn capture(broker: SocketAddr, login: &ClientLogin, topic: &str) -> Vec<u8> {
    packages::ensure("/usr/bin/mosquitto_sub", "mosquitto-clients");
    let output = Command::new("/usr/bin/mosquitto_sub")
        .args(login.args(broker))
        .args(["-t", topic, "-C", "1", "-W", "20", "-F", "%x"])
        .output()
        .expect("run mosquitto_sub");
    assert!(output.status.success(), "capture on {topic} failed");
    hex::decode(String::from_utf8(output.stdout).unwrap().trim()).unwrap()
}
