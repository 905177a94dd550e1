//! The region's configuration: a TOML file, then `EDGEMETAL_*` environment
//! overrides, then defaults that make a one-machine setup work untouched.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;

/// Everything the region needs to start.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegionConfig {
    /// Where the region keeps its files (the SQLite database by default).
    pub data_dir: PathBuf,
    /// `sqlite://PATH` or `postgres://…`; default: `region.db` in `data_dir`.
    pub database_url: Option<String>,
    /// Address of the HTTP API.
    pub http_listen: SocketAddr,
    /// A rack not heard from for this many seconds is marked offline.
    pub heartbeat_timeout_secs: u64,
    /// The MQTT broker.
    pub broker: BrokerConfig,
}

/// Which broker the region uses.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerConfig {
    /// An external broker, `mqtt://HOST:PORT`; when absent the region embeds one.
    pub url: Option<String>,
    /// Where the embedded broker listens.
    pub embedded_listen: SocketAddr,
}

impl Default for RegionConfig {
    fn default() -> Self {
        RegionConfig {
            data_dir: PathBuf::from("data/region"),
            database_url: None,
            http_listen: "127.0.0.1:5240".parse().expect("valid default"),
            heartbeat_timeout_secs: 30,
            broker: BrokerConfig::default(),
        }
    }
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            url: None,
            embedded_listen: "127.0.0.1:1883".parse().expect("valid default"),
        }
    }
}

impl RegionConfig {
    /// Reads the file (if given), then applies environment overrides.
    pub fn load(path: Option<&Path>) -> anyhow::Result<RegionConfig> {
        let mut config = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read config file {}", path.display()))?;
                toml::from_str(&text)
                    .with_context(|| format!("invalid config file {}", path.display()))?
            }
            None => RegionConfig::default(),
        };
        config.apply_env(|name| std::env::var(name).ok())?;
        Ok(config)
    }

    /// Applies `EDGEMETAL_*` overrides read through `var`.
    pub fn apply_env(&mut self, var: impl Fn(&str) -> Option<String>) -> anyhow::Result<()> {
        if let Some(dir) = var("EDGEMETAL_DATA_DIR") {
            self.data_dir = dir.into();
        }
        if let Some(url) = var("EDGEMETAL_DATABASE_URL") {
            self.database_url = Some(url);
        }
        if let Some(listen) = var("EDGEMETAL_HTTP_LISTEN") {
            self.http_listen = listen
                .parse()
                .with_context(|| format!("EDGEMETAL_HTTP_LISTEN={listen:?} is not HOST:PORT"))?;
        }
        if let Some(url) = var("EDGEMETAL_BROKER_URL") {
            self.broker.url = Some(url);
        }
        if let Some(listen) = var("EDGEMETAL_EMBEDDED_BROKER_LISTEN") {
            self.broker.embedded_listen = listen.parse().with_context(|| {
                format!("EDGEMETAL_EMBEDDED_BROKER_LISTEN={listen:?} is not HOST:PORT")
            })?;
        }
        if let Some(secs) = var("EDGEMETAL_HEARTBEAT_TIMEOUT_SECS") {
            self.heartbeat_timeout_secs = secs.parse().with_context(|| {
                format!("EDGEMETAL_HEARTBEAT_TIMEOUT_SECS={secs:?} is not a number")
            })?;
        }
        Ok(())
    }

    /// The database URL, defaulting to SQLite in the data directory.
    pub fn database_url(&self) -> String {
        self.database_url.clone().unwrap_or_else(|| {
            format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("region.db").display()
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_overrides_the_file() {
        let mut config: RegionConfig =
            toml::from_str("http_listen = \"127.0.0.1:1\"\n[broker]\nurl = \"mqtt://a:1\"")
                .unwrap();
        config
            .apply_env(|name| (name == "EDGEMETAL_HTTP_LISTEN").then(|| "127.0.0.1:2".to_string()))
            .unwrap();
        assert_eq!(config.http_listen.port(), 2);
        assert_eq!(config.broker.url.as_deref(), Some("mqtt://a:1"));
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(toml::from_str::<RegionConfig>("htp_listen = \"x\"").is_err());
    }
}
