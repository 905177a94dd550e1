//! Runs the rack's DNS server alone from a JSON `DnsConfig`, for benchmarks
//! and manual tests:
//!
//! ```sh
//! cargo run --release -p edgemetal-rack --example dns_serve -- \
//!     --config dns.json --listen 127.0.0.1:5300 --upstream-port 5301
//! ```
//!
//! The JSON is the snapshot's `dns` field, e.g.
//! `{"zones":[{"name":"site.internal","serial":1,"negative_ttl":30,
//! "records":[{"name":"h.site.internal","ttl":300,"data":{"A":"10.0.0.5"}}]}],
//! "forwarders":["127.0.0.1"],"allowed_networks":["10.0.0.0/8"]}`.
//! Listens on UDP and TCP on the same address; prints `listening on ADDR`
//! once ready and the counters on Ctrl-C or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use edgemetal_protocol::{ConfigSnapshot, DnsConfig, Generation};
use edgemetal_rack::dns::{Counters, DnsServer, Outcome, ServerConfig, UpstreamEvent};

#[derive(Parser)]
struct Args {
    /// The DNS configuration, as JSON.
    #[arg(long)]
    config: PathBuf,
    /// Address to listen on, UDP and TCP (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:5300")]
    listen: SocketAddr,
    /// The cache file (default: none kept).
    #[arg(long)]
    cache_file: Option<PathBuf>,
    /// Tasks receiving on the UDP socket.
    #[arg(long, default_value_t = 4)]
    udp_workers: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let args = Args::parse();
    let text = std::fs::read(&args.config)
        .with_context(|| format!("cannot read {}", args.config.display()))?;
    let dns: DnsConfig = serde_json::from_slice(&text)
        .with_context(|| format!("{} is not a DnsConfig", args.config.display()))?;
    let snapshot = ConfigSnapshot {
        generation: Generation(1),
        subnets: Vec::new(),
        boot_resources: Vec::new(),
        dns,
        gateway: Default::default(),
        machine_boot: Default::default(),
    };
    let (_keep, snapshots) = tokio::sync::watch::channel(Some(snapshot));
    let (cache_file, scratch) = match args.cache_file {
        Some(file) => (file, None),
        None => {
            let dir = tempfile_dir()?;
            (dir.join(edgemetal_rack::dns::CACHE_FILE), Some(dir))
        }
    };
    let config = ServerConfig {
        udp_workers: args.udp_workers,
        ..ServerConfig::default()
    };
    let counters = Arc::new(Counters::default());
    let server = DnsServer::bind_with(
        args.listen,
        args.listen,
        snapshots,
        cache_file,
        config,
        counters.clone(),
    )
    .await?;
    println!("listening on {}", server.local_udp_addr()?);
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    // Either signal drops the server, which saves its cache.
    tokio::select! {
        result = server.run() => result?,
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    let queries: Vec<String> = Outcome::ALL
        .iter()
        .map(|o| format!("{} {}", o.as_str(), counters.queries(*o)))
        .collect();
    let upstream: Vec<String> = UpstreamEvent::ALL
        .iter()
        .map(|e| format!("{} {}", e.as_str(), counters.upstream(*e)))
        .collect();
    println!("queries: {}", queries.join(", "));
    println!("upstream: {}", upstream.join(", "));
    if let Some(scratch) = scratch {
        let _ = std::fs::remove_dir_all(scratch);
    }
    Ok(())
}

/// A private directory for the cache file when none is asked for.
fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("dns_serve.{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
