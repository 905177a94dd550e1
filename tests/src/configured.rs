//! A region started with extra environment (API TLS, listen policy), for
//! tests where [`crate::RegionProcess`]'s fixed setup is not enough: it does
//! not wait for readiness, since "ready" depends on the transport under test.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::{RegionOptions, RegionProcess};

/// A running `edgemetal-region serve`, killed on drop.
pub struct ConfiguredRegion {
    child: Child,
    /// API address.
    pub http: SocketAddr,
    /// An admin API key.
    pub api_key: String,
    /// The process's log file.
    pub log: PathBuf,
}

fn command(options: &RegionOptions, http: SocketAddr, env: &[(&str, String)]) -> Command {
    let mut command = RegionProcess::command(options, http);
    for (name, value) in env {
        command.env(name, value);
    }
    command
}

impl ConfiguredRegion {
    /// Creates an admin key, then spawns `serve` on `http` with `env` added.
    pub fn spawn(
        options: &RegionOptions,
        http: SocketAddr,
        env: &[(&str, String)],
    ) -> ConfiguredRegion {
        let api_key = options.create_api_key();
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&options.log)
            .expect("open log");
        let child = command(options, http, env)
            .arg("serve")
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("clone log handle"))
            .stderr(file)
            .env("EDGEMETAL_LOG", "info,edgemetal_region=debug,rumqttd=warn")
            .env("NO_COLOR", "1")
            .spawn()
            .expect("spawn region");
        ConfiguredRegion {
            child,
            http,
            api_key,
            log: options.log.clone(),
        }
    }

    /// The exit status if the process ends within `timeout`, else `None`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What the process has logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for ConfiguredRegion {
    fn drop(&mut self) {
        // SAFETY: kill(2) on a pid we own; ESRCH (already gone) is ignored.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}
