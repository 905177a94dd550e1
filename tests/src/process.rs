//! Our own binaries as child processes, with logs kept per test.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime};

use crate::{ports, wait_until, ApiClient};

/// The directory our binaries are built into (the test binary's profile dir).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/<test-binary>
    exe.parent()
        .and_then(Path::parent)
        .expect("test binary lives in target/<profile>/deps")
        .to_path_buf()
}

fn newest_source(dir: &Path) -> SystemTime {
    let mut newest = SystemTime::UNIX_EPOCH;
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            let modified = if path.is_dir() {
                newest_source(&path)
            } else {
                entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .unwrap_or(SystemTime::UNIX_EPOCH)
            };
            newest = newest.max(modified);
        }
    }
    newest
}

/// Path of one of our binaries, refusing to run a missing or stale one.
///
/// The tests do not build the binaries themselves: a `cargo build` with a
/// narrower package selection than the test run unifies features
/// differently and rebuilds half the tree. `scripts/test.sh` builds the
/// workspace once, then runs the tests.
pub fn binary(name: &str) -> PathBuf {
    // EDGEMETAL_BIN_DIR picks another build (e.g. target/release) than the test's own profile.
    // A relative one is taken from the workspace root, as a reader of the
    // README types it (the test itself runs in tests/).
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root");
    let dir =
        std::env::var_os("EDGEMETAL_BIN_DIR").map_or_else(profile_dir, |dir| workspace.join(dir));
    let path = dir.join(name);
    let built = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .unwrap_or_else(|_| {
            panic!(
                "{} is missing: run `cargo build --workspace --all-targets` (scripts/test.sh does)",
                path.display()
            )
        });
    let sources: &[&str] = match name {
        "edgemetal-rack" => &["protocol/src", "rack-edge/src"],
        _ => &[
            "protocol/src",
            "region-model/src",
            "region-store/src",
            "region-store/migrations",
            "region/src",
        ],
    };
    for crate_dir in sources {
        let newest = newest_source(&workspace.join(crate_dir));
        assert!(
            newest <= built,
            "{} is older than the sources in {crate_dir}/: run `cargo build --workspace --all-targets` (scripts/test.sh does)",
            path.display()
        );
    }
    path
}

/// Where every test's logs go: `target/test-logs/`.
pub fn log_root() -> PathBuf {
    let dir = profile_dir()
        .parent()
        .expect("target dir")
        .join("test-logs");
    std::fs::create_dir_all(&dir).expect("create log dir");
    dir
}

/// Where a test's process logs go: `target/test-logs/<test>/`.
pub fn log_dir(test: &str) -> PathBuf {
    let dir = log_root().join(test);
    std::fs::create_dir_all(&dir).expect("create log dir");
    dir
}

fn spawn_logged(mut command: Command, log: &Path) -> Child {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("open log");
    command
        .stdin(Stdio::null())
        .stdout(file.try_clone().expect("clone log handle"))
        .stderr(file)
        .env(
            "EDGEMETAL_LOG",
            "info,edgemetal_region=debug,edgemetal_rack=debug,rumqttd=warn",
        )
        .env("NO_COLOR", "1")
        .spawn()
        .expect("spawn process")
}

fn kill(child: &mut Child, signal: i32) {
    // SAFETY: kill(2) on a pid we own; the worst case is ESRCH, which we ignore.
    unsafe {
        libc::kill(child.id() as i32, signal);
    }
    let _ = child.wait();
}

/// How to start a region.
pub struct RegionOptions {
    /// The region's data dir (SQLite database by default); keep it to restart the region.
    pub data_dir: PathBuf,
    /// `postgres://…` to use PostgreSQL instead of SQLite.
    pub database_url: Option<String>,
    /// An external broker; `None` embeds one on `embedded_broker`.
    pub broker_url: Option<String>,
    /// Where the embedded broker listens.
    pub embedded_broker: SocketAddr,
    /// Seconds without heartbeat before a rack is offline.
    pub heartbeat_timeout_secs: u64,
    /// Extra environment for the region.
    pub env: Vec<(String, String)>,
    /// Log file name prefix.
    pub log: PathBuf,
}

impl RegionOptions {
    /// SQLite + embedded broker on a free port, data in `data_dir`, logs in `log_dir`.
    pub fn embedded(data_dir: &Path, log_dir: &Path) -> Self {
        RegionOptions {
            data_dir: data_dir.to_path_buf(),
            database_url: None,
            broker_url: None,
            embedded_broker: ports::free_loopback(),
            heartbeat_timeout_secs: 30,
            env: Vec::new(),
            log: log_dir.join("region.log"),
        }
    }

    /// Creates an admin API key with the region binary (recorded as a secret).
    pub fn create_api_key(&self) -> String {
        // `--init`: the first key of a test region creates its database.
        let api_key = self.admin(&["--init", "api-key", "create", "--name", "test"]);
        crate::secrets::remember(&api_key);
        api_key
    }

    /// Runs an administrative subcommand of the region binary, whatever its outcome.
    pub fn admin_output(&self, args: &[&str]) -> std::process::Output {
        RegionProcess::command(self, ports::free_loopback())
            .args(args)
            .output()
            .expect("run edgemetal-region")
    }

    /// Runs an administrative subcommand of the region binary; returns its stdout.
    pub fn admin(&self, args: &[&str]) -> String {
        let output = self.admin_output(args);
        assert!(
            output.status.success(),
            "edgemetal-region {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout)
            .expect("utf-8")
            .trim()
            .to_string()
    }
}

/// A running `edgemetal-region`, killed on drop.
pub struct RegionProcess {
    child: Child,
    /// API address.
    pub http: SocketAddr,
    /// An admin API key.
    pub api_key: String,
}

impl RegionProcess {
    /// The region binary with the environment `options` describe.
    pub(crate) fn command(options: &RegionOptions, http: SocketAddr) -> Command {
        let mut command = Command::new(binary("edgemetal-region"));
        command
            .env("EDGEMETAL_DATA_DIR", &options.data_dir)
            .env("EDGEMETAL_HTTP_LISTEN", http.to_string())
            .env(
                "EDGEMETAL_EMBEDDED_BROKER_LISTEN",
                options.embedded_broker.to_string(),
            )
            .env(
                "EDGEMETAL_HEARTBEAT_TIMEOUT_SECS",
                options.heartbeat_timeout_secs.to_string(),
            );
        if let Some(url) = &options.database_url {
            command.env("EDGEMETAL_DATABASE_URL", url);
        }
        if let Some(url) = &options.broker_url {
            command.env("EDGEMETAL_BROKER_URL", url);
        }
        for (name, value) in &options.env {
            command.env(name, value);
        }
        command
    }

    /// Creates an API key, starts the region and waits until its API answers.
    pub async fn start(options: &RegionOptions) -> RegionProcess {
        let http = ports::free_loopback();
        let api_key = options.create_api_key();
        let mut command = Self::command(options, http);
        command.arg("serve");
        let child = spawn_logged(command, &options.log);
        let region = RegionProcess {
            child,
            http,
            api_key,
        };
        let client = region.client();
        wait_until("the region API", Duration::from_secs(20), || async {
            client.healthz().await.then_some(())
        })
        .await;
        region
    }

    /// An API client with the admin key.
    pub fn client(&self) -> ApiClient {
        ApiClient::new(self.http, Some(self.api_key.clone()))
    }

    /// The API's base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.http)
    }

    /// Creates an enrolment token for `rack_name` through the API.
    pub async fn enrolment_token(&self, rack_name: &str) -> String {
        let created = self
            .client()
            .create(
                "/api/v1/enrolment-tokens",
                serde_json::json!({"rack_name": rack_name}),
            )
            .await;
        let token = created["token"].as_str().expect("token text").to_string();
        crate::secrets::remember(&token);
        token
    }

    /// Enrols a rack named `rack_name` into `state_dir` with the rack binary.
    pub async fn enrol_rack(&self, rack_name: &str, state_dir: &Path) {
        let token = self.enrolment_token(rack_name).await;
        let output = enrol_command(&self.url(), &token, state_dir)
            .output()
            .expect("run edgemetal-rack enrol");
        assert!(
            output.status.success(),
            "enrolment failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), rack_name);
        crate::secrets::remember_identity(&state_dir.join("identity.json"));
    }

    /// Kills the process with SIGKILL.
    pub fn kill(mut self) {
        kill(&mut self.child, libc::SIGKILL);
    }

    /// The process id (e.g. to read its memory use from /proc).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops the process cleanly (SIGTERM) and waits for it to exit.
    pub fn stop(mut self) -> std::process::ExitStatus {
        // SAFETY: kill(2) on a pid we own.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        self.child.wait().expect("wait for the region")
    }
}

impl Drop for RegionProcess {
    fn drop(&mut self) {
        kill(&mut self.child, libc::SIGKILL);
    }
}

/// A running `edgemetal-rack`, killed on drop.
pub struct RackProcess {
    child: Child,
    /// Its local status endpoint.
    pub status: SocketAddr,
}

impl RackProcess {
    /// Starts an enrolled rack whose state (identity included) is in `state_dir`.
    pub async fn start(state_dir: &Path, log: &Path) -> RackProcess {
        RackProcess::start_with(state_dir, log, &[]).await
    }

    /// Like [`RackProcess::start`], with extra `run` arguments.
    pub async fn start_with(state_dir: &Path, log: &Path, extra: &[&str]) -> RackProcess {
        let status = ports::free_loopback();
        let mut command = Command::new(binary("edgemetal-rack"));
        command.arg("run").arg("--state-dir").arg(state_dir).args([
            "--status-listen",
            &status.to_string(),
            "--heartbeat-secs",
            "1",
        ]);
        command.args(extra);
        let child = spawn_logged(command, log);
        let rack = RackProcess { child, status };
        let url = format!("http://{status}/healthz");
        wait_until("the rack status endpoint", Duration::from_secs(20), || {
            let url = url.clone();
            async move {
                reqwest::get(&url)
                    .await
                    .ok()
                    .filter(|r| r.status().is_success())
                    .map(|_| ())
            }
        })
        .await;
        rack
    }

    /// The rack's `/status` document.
    pub async fn status(&self) -> serde_json::Value {
        reqwest::get(format!("http://{}/status", self.status))
            .await
            .expect("rack status")
            .json()
            .await
            .expect("rack status JSON")
    }

    /// The rack's `/metrics` text.
    pub async fn metrics(&self) -> String {
        reqwest::get(format!("http://{}/metrics", self.status))
            .await
            .expect("rack metrics")
            .text()
            .await
            .expect("metrics text")
    }

    /// Kills the process with SIGKILL (no clean shutdown, as in a crash).
    pub fn kill(mut self) {
        kill(&mut self.child, libc::SIGKILL);
    }

    /// Sends a signal without waiting (e.g. SIGSTOP / SIGCONT to freeze and thaw it).
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on a pid we own.
        unsafe {
            libc::kill(self.child.id() as i32, signal);
        }
    }
}

impl Drop for RackProcess {
    fn drop(&mut self) {
        kill(&mut self.child, libc::SIGKILL);
    }
}

/// `edgemetal-rack enrol` with a token, ready to run (tests may expect it to fail).
pub fn enrol_command(region_url: &str, token: &str, state_dir: &Path) -> Command {
    let mut command = Command::new(binary("edgemetal-rack"));
    command
        .args(["enrol", "--region-url", region_url, "--token", token])
        .arg("--state-dir")
        .arg(state_dir);
    command
}
