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
    /// Every machine with BMC settings has its power checked once per this many seconds.
    pub power_poll_interval_secs: u64,
    /// The MQTT broker.
    pub broker: BrokerConfig,
    /// The HTTP API's transport security.
    pub api: ApiConfig,
    /// What racks' DNS servers forward to and whom they serve.
    pub dns: crate::model::dns::DnsSettings,
    /// How machines are commissioned.
    pub commissioning: CommissioningConfig,
    /// How long deployments and releases with erase may take.
    pub deployment: DeploymentConfig,
    /// The racks' syslog relay.
    pub syslog: edgemetal_protocol::SyslogConfig,
    /// How long and how many machine log lines the region keeps.
    pub syslog_retention: SyslogRetention,
    /// The racks' APT/HTTP caching proxy.
    pub proxy: edgemetal_protocol::ProxyConfig,
    /// The racks' NTP server.
    pub ntp: edgemetal_protocol::NtpConfig,
}

impl RegionConfig {
    /// The gateway services' settings racks get in their snapshot.
    pub fn gateway(&self) -> edgemetal_protocol::GatewayConfig {
        edgemetal_protocol::GatewayConfig {
            syslog: self.syslog.clone(),
            proxy: self.proxy.clone(),
            ntp: self.ntp.clone(),
        }
    }
}

/// How long and how many machine log lines (from the racks' syslog
/// relays) the region keeps; a periodic prune enforces both.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyslogRetention {
    /// Lines older than this many days are deleted (0: no age limit).
    pub max_age_days: u64,
    /// Beyond this many lines in total, the oldest are deleted (0: no limit).
    pub max_lines: u64,
    /// Seconds between prunes.
    pub prune_interval_secs: u64,
}

impl Default for SyslogRetention {
    fn default() -> Self {
        SyslogRetention {
            max_age_days: 30,
            max_lines: 5_000_000,
            prune_interval_secs: 300,
        }
    }
}

impl SyslogRetention {
    /// The store's view of the limits.
    pub fn limits(&self) -> crate::store::LogRetention {
        crate::store::LogRetention {
            max_age_ms: i64::try_from(self.max_age_days.saturating_mul(86_400_000))
                .unwrap_or(i64::MAX),
            max_rows: i64::try_from(self.max_lines).unwrap_or(i64::MAX),
        }
    }
}

/// How machines are commissioned.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CommissioningConfig {
    /// A machine still commissioning after this many seconds is Failed commissioning.
    pub timeout_secs: u64,
    /// Commission a machine as soon as it is enlisted (MAAS does by default).
    pub auto_commission: bool,
}

/// How long deploy and release runs may take.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeploymentConfig {
    /// A machine still deploying after this many seconds is Failed deployment.
    pub timeout_secs: u64,
    /// A machine still erasing its disks after this many seconds is Failed releasing.
    pub release_timeout_secs: u64,
}

impl Default for DeploymentConfig {
    fn default() -> Self {
        DeploymentConfig {
            timeout_secs: 3600,
            release_timeout_secs: 3600,
        }
    }
}

impl Default for CommissioningConfig {
    fn default() -> Self {
        CommissioningConfig {
            timeout_secs: 1800,
            auto_commission: true,
        }
    }
}

/// How the HTTP API is served: HTTPS when `tls_cert` and `tls_key` are set;
/// otherwise plain HTTP, which is refused on a non-loopback `http_listen`
/// unless `allow_plaintext` says a TLS-terminating proxy sits in front.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// PEM certificate chain (leaf first) for HTTPS.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for HTTPS.
    pub tls_key: Option<PathBuf>,
    /// Serve plain HTTP on a non-loopback address anyway (warned at every start).
    pub allow_plaintext: bool,
    /// Serve HTTPS with a certificate from the region's own CA (for the
    /// names in `[broker] tls_names`) when no `tls_cert` is given.
    pub tls_generated: bool,
    /// Failed authentications one source may make with one presented key
    /// (or with none) within `auth_failure_window_secs` before that pair is
    /// refused for a while. Other keys from the same source still work.
    pub auth_failure_limit: usize,
    /// The sliding window failed authentications are counted over.
    pub auth_failure_window_secs: u64,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            tls_cert: None,
            tls_key: None,
            allow_plaintext: false,
            tls_generated: false,
            auth_failure_limit: 10,
            auth_failure_window_secs: 60,
        }
    }
}

/// Which broker the region uses.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerConfig {
    /// An external broker, `mqtts://HOST:PORT`; when absent the region embeds one.
    pub url: Option<String>,
    /// Where the embedded broker listens.
    pub embedded_listen: SocketAddr,
    /// The broker URL racks are told at enrolment; default: the region's own view.
    pub public_url: Option<String>,
    /// Names and addresses the generated broker certificate is valid for.
    pub tls_names: Vec<String>,
    /// CA (PEM file) that an external broker's certificate chains to; default: the region's CA.
    pub ca_file: Option<PathBuf>,
    /// Run the embedded broker without TLS. Logged as a warning at every start.
    pub insecure_plaintext: bool,
    /// For an external Mosquitto: where the region writes the password file
    /// and ACL file it keeps current, and the pid file of the process to reload.
    pub mosquitto: Option<MosquittoFiles>,
}

/// Files the region maintains for an external Mosquitto.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MosquittoFiles {
    /// `password_file` of the Mosquitto listener.
    pub password_file: PathBuf,
    /// `acl_file` of the Mosquitto listener.
    pub acl_file: PathBuf,
    /// Mosquitto's pid file; it gets SIGHUP after each change.
    pub pid_file: Option<PathBuf>,
}

impl Default for RegionConfig {
    fn default() -> Self {
        RegionConfig {
            data_dir: PathBuf::from("data/region"),
            database_url: None,
            http_listen: "127.0.0.1:5240".parse().expect("valid default"),
            heartbeat_timeout_secs: 30,
            power_poll_interval_secs: 300,
            broker: BrokerConfig::default(),
            api: ApiConfig::default(),
            dns: Default::default(),
            commissioning: Default::default(),
            deployment: Default::default(),
            syslog: Default::default(),
            syslog_retention: Default::default(),
            proxy: Default::default(),
            ntp: Default::default(),
        }
    }
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            url: None,
            embedded_listen: "127.0.0.1:8883".parse().expect("valid default"),
            public_url: None,
            tls_names: vec!["localhost".to_string(), "127.0.0.1".to_string()],
            ca_file: None,
            insecure_plaintext: false,
            mosquitto: None,
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
        anyhow::ensure!(
            config.api.auth_failure_limit > 0 && config.api.auth_failure_window_secs > 0,
            "[api] auth_failure_limit and auth_failure_window_secs must be positive"
        );
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
        if let Some(url) = var("EDGEMETAL_BROKER_PUBLIC_URL") {
            self.broker.public_url = Some(url);
        }
        if let Some(names) = var("EDGEMETAL_BROKER_TLS_NAMES") {
            self.broker.tls_names = names.split(',').map(|n| n.trim().to_string()).collect();
        }
        if let Some(file) = var("EDGEMETAL_BROKER_CA_FILE") {
            self.broker.ca_file = Some(file.into());
        }
        if let Some(flag) = var("EDGEMETAL_BROKER_INSECURE_PLAINTEXT") {
            self.broker.insecure_plaintext = matches!(flag.as_str(), "1" | "true" | "yes");
        }
        if let (Some(password_file), Some(acl_file)) = (
            var("EDGEMETAL_MOSQUITTO_PASSWORD_FILE"),
            var("EDGEMETAL_MOSQUITTO_ACL_FILE"),
        ) {
            self.broker.mosquitto = Some(MosquittoFiles {
                password_file: password_file.into(),
                acl_file: acl_file.into(),
                pid_file: var("EDGEMETAL_MOSQUITTO_PID_FILE").map(PathBuf::from),
            });
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
        if let Some(secs) = var("EDGEMETAL_POWER_POLL_INTERVAL_SECS") {
            self.power_poll_interval_secs = secs
                .parse()
                .ok()
                .filter(|secs| *secs > 0)
                .with_context(|| {
                    format!("EDGEMETAL_POWER_POLL_INTERVAL_SECS={secs:?} is not a positive number")
                })?;
        }
        if let Some(secs) = var("EDGEMETAL_COMMISSIONING_TIMEOUT_SECS") {
            self.commissioning.timeout_secs = secs
                .parse()
                .ok()
                .filter(|secs| *secs > 0)
                .with_context(|| {
                    format!(
                        "EDGEMETAL_COMMISSIONING_TIMEOUT_SECS={secs:?} is not a positive number"
                    )
                })?;
        }
        if let Some(secs) = var("EDGEMETAL_DEPLOYMENT_TIMEOUT_SECS") {
            self.deployment.timeout_secs = secs
                .parse()
                .ok()
                .filter(|secs| *secs > 0)
                .with_context(|| {
                    format!("EDGEMETAL_DEPLOYMENT_TIMEOUT_SECS={secs:?} is not a positive number")
                })?;
        }
        if let Some(flag) = var("EDGEMETAL_AUTO_COMMISSION") {
            self.commissioning.auto_commission = flag.parse().with_context(|| {
                format!("EDGEMETAL_AUTO_COMMISSION={flag:?} is not true or false")
            })?;
        }
        if let Some(bytes) = var("EDGEMETAL_SYSLOG_MAX_MESSAGE_BYTES") {
            self.syslog.max_message_bytes = bytes.parse().with_context(|| {
                format!("EDGEMETAL_SYSLOG_MAX_MESSAGE_BYTES={bytes:?} is not a number")
            })?;
        }
        if let Some(bytes) = var("EDGEMETAL_SYSLOG_QUEUE_BYTES") {
            self.syslog.queue_bytes = bytes.parse().with_context(|| {
                format!("EDGEMETAL_SYSLOG_QUEUE_BYTES={bytes:?} is not a number")
            })?;
        }
        if let Some(days) = var("EDGEMETAL_SYSLOG_RETENTION_DAYS") {
            self.syslog_retention.max_age_days = days.parse().with_context(|| {
                format!("EDGEMETAL_SYSLOG_RETENTION_DAYS={days:?} is not a number")
            })?;
        }
        if let Some(lines) = var("EDGEMETAL_SYSLOG_RETENTION_LINES") {
            self.syslog_retention.max_lines = lines.parse().with_context(|| {
                format!("EDGEMETAL_SYSLOG_RETENTION_LINES={lines:?} is not a number")
            })?;
        }
        if let Some(list) = var("EDGEMETAL_NTP_UPSTREAMS") {
            // Comma-separated `host` or `host:port`; empty: none.
            self.ntp.upstreams = list
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
        }
        if let Some(parent) = var("EDGEMETAL_PROXY_PARENT") {
            // `http://HOST:PORT`; empty: direct.
            self.proxy.parent = Some(parent.trim().to_string()).filter(|p| !p.is_empty());
        }
        if let Some(bytes) = var("EDGEMETAL_PROXY_CACHE_BYTES") {
            self.proxy.cache_bytes = bytes.parse().with_context(|| {
                format!("EDGEMETAL_PROXY_CACHE_BYTES={bytes:?} is not a number")
            })?;
        }
        if let Some(list) = var("EDGEMETAL_PROXY_ALLOWED_NETWORKS") {
            self.proxy.allowed_networks = list
                .split(',')
                .filter(|s| !s.trim().is_empty())
                .map(|s| s.trim().parse())
                .collect::<Result<_, _>>()
                .with_context(|| {
                    format!("EDGEMETAL_PROXY_ALLOWED_NETWORKS={list:?} is not a comma-separated list of a.b.c.d/len")
                })?;
        }
        if let Some(list) = var("EDGEMETAL_PROXY_CONNECT_PORTS") {
            self.proxy.connect_ports = list
                .split(',')
                .filter(|s| !s.trim().is_empty())
                .map(|s| s.trim().parse())
                .collect::<Result<_, _>>()
                .with_context(|| {
                    format!("EDGEMETAL_PROXY_CONNECT_PORTS={list:?} is not a comma-separated list of ports")
                })?;
        }
        if let Some(list) = var("EDGEMETAL_DNS_FORWARDERS") {
            self.dns.forwarders = list
                .split(',')
                .filter(|s| !s.trim().is_empty())
                .map(|s| s.trim().parse())
                .collect::<Result<_, _>>()
                .with_context(|| {
                    format!("EDGEMETAL_DNS_FORWARDERS={list:?} is not a comma-separated list of forwarders (addresses, optionally with #port)")
                })?;
        }
        if let Some(cert) = var("EDGEMETAL_API_TLS_CERT") {
            self.api.tls_cert = Some(cert.into());
        }
        if let Some(key) = var("EDGEMETAL_API_TLS_KEY") {
            self.api.tls_key = Some(key.into());
        }
        if let Some(flag) = var("EDGEMETAL_API_TLS_GENERATED") {
            self.api.tls_generated = parse_flag(&flag).with_context(|| {
                format!("EDGEMETAL_API_TLS_GENERATED={flag:?} is not 1/0, true/false or yes/no")
            })?;
        }
        if let Some(limit) = var("EDGEMETAL_API_AUTH_FAILURE_LIMIT") {
            self.api.auth_failure_limit =
                limit.parse().ok().filter(|n| *n > 0).with_context(|| {
                    format!("EDGEMETAL_API_AUTH_FAILURE_LIMIT={limit:?} is not a positive number")
                })?;
        }
        if let Some(flag) = var("EDGEMETAL_API_ALLOW_PLAINTEXT") {
            // A typo must not silently fall back to the safe-looking default.
            self.api.allow_plaintext = parse_flag(&flag).with_context(|| {
                format!("EDGEMETAL_API_ALLOW_PLAINTEXT={flag:?} is not 1/0, true/false or yes/no")
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

/// A boolean from an environment variable.
fn parse_flag(text: &str) -> anyhow::Result<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" | "" => Ok(false),
        _ => anyhow::bail!("not a boolean"),
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

    #[test]
    fn api_tls_comes_from_the_file_or_the_environment() {
        let mut config: RegionConfig = toml::from_str(
            "http_listen = \"0.0.0.0:5240\"\n[api]\ntls_cert = \"/etc/c.pem\"\nallow_plaintext = false",
        )
        .unwrap();
        assert_eq!(
            config.api.tls_cert.as_deref(),
            Some(Path::new("/etc/c.pem"))
        );
        assert_eq!(config.api.tls_key, None);
        config
            .apply_env(|name| match name {
                "EDGEMETAL_API_TLS_KEY" => Some("/etc/k.pem".to_string()),
                "EDGEMETAL_API_ALLOW_PLAINTEXT" => Some("1".to_string()),
                _ => None,
            })
            .unwrap();
        assert_eq!(config.api.tls_key.as_deref(), Some(Path::new("/etc/k.pem")));
        assert!(config.api.allow_plaintext);
        assert!(config
            .apply_env(|name| (name == "EDGEMETAL_API_ALLOW_PLAINTEXT").then(|| "maybe".into()))
            .is_err());
        assert!(toml::from_str::<RegionConfig>("[api]\ntls_crt = \"x\"").is_err());
    }
}
