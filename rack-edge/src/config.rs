//! The rack's start-up settings (command line or `EDGEMETAL_RACK_*` environment).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Everything the rack needs to start.
#[derive(Debug, Clone, clap::Args)]
pub struct RackConfig {
    /// The region's broker, `mqtt://HOST:PORT`.
    #[arg(
        long,
        env = "EDGEMETAL_RACK_BROKER_URL",
        default_value = "mqtt://127.0.0.1:1883"
    )]
    pub broker_url: String,
    /// Where the rack keeps its identity and applied snapshot.
    #[arg(long, env = "EDGEMETAL_RACK_STATE_DIR", default_value = "data/rack")]
    pub state_dir: PathBuf,
    /// The rack's id; by default one is generated on first start and kept in the state dir.
    #[arg(long, env = "EDGEMETAL_RACK_ID")]
    pub rack_id: Option<String>,
    /// Local status endpoint (health, status, metrics).
    #[arg(
        long,
        env = "EDGEMETAL_RACK_STATUS_LISTEN",
        default_value = "127.0.0.1:5250"
    )]
    pub status_listen: SocketAddr,
    /// Seconds between heartbeats.
    #[arg(long, env = "EDGEMETAL_RACK_HEARTBEAT_SECS", default_value_t = 5)]
    pub heartbeat_secs: u64,
}

impl RackConfig {
    /// The heartbeat period.
    pub fn heartbeat_interval(&self) -> Duration {
        Duration::from_secs(self.heartbeat_secs.max(1))
    }
}
