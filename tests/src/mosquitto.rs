//! A throwaway Mosquitto broker on a free loopback port.

use std::net::SocketAddr;
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

impl Mosquitto {
    /// Starts Mosquitto with anonymous access; installs it if missing.
    pub fn start() -> Mosquitto {
        packages::ensure("/usr/sbin/mosquitto", "mosquitto");
        packages::ensure("/usr/bin/mosquitto_pub", "mosquitto-clients");
        let dir = tempfile::Builder::new()
            .prefix("edgemetal-mqtt")
            .tempdir()
            .expect("temp dir");
        let address = ports::free_loopback();
        let config = dir.path().join("mosquitto.conf");
        std::fs::write(
            &config,
            format!(
                "listener {} {}\nallow_anonymous true\npersistence false\nlog_dest stderr\n",
                address.port(),
                address.ip()
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
        Mosquitto {
            child,
            address,
            _dir: dir,
        }
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

/// Publishes raw bytes with `mosquitto_pub`, as an outsider on the broker would.
pub fn publish_raw(broker: SocketAddr, topic: &str, payload: &[u8]) {
    packages::ensure("/usr/bin/mosquitto_pub", "mosquitto-clients");
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), payload).expect("write payload");
    let status = Command::new("/usr/bin/mosquitto_pub")
        .args([
            "-h",
            &broker.ip().to_string(),
            "-p",
            &broker.port().to_string(),
            "-q",
            "1",
            "-t",
            topic,
            "-f",
        ])
        .arg(file.path())
        .status()
        .expect("run mosquitto_pub");
    assert!(status.success(), "mosquitto_pub to {topic} failed");
}
