//! Runs the rack's TFTP server alone on a directory, for benchmarks and
//! manual tests:
//!
//! ```sh
//! cargo run --release -p edgemetal-rack --example tftp_serve -- --root /srv/tftp --listen 127.0.0.1:6969
//! ```
//!
//! Prints `listening on ADDR` once ready; prints the counters on Ctrl-C.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use edgemetal_rack::tftp::{DirSource, TftpConfig, TftpServer};

#[derive(Parser)]
struct Args {
    /// Directory to serve.
    #[arg(long)]
    root: PathBuf,
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:6969")]
    listen: SocketAddr,
    /// Largest windowsize granted.
    #[arg(long, default_value_t = 64)]
    max_windowsize: u16,
    /// Transfers in progress at once.
    #[arg(long, default_value_t = 256)]
    max_transfers: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let args = Args::parse();
    let source = DirSource::new(&args.root)
        .with_context(|| format!("cannot serve {}", args.root.display()))?;
    let config = TftpConfig {
        max_windowsize: args.max_windowsize,
        max_transfers: args.max_transfers,
        ..TftpConfig::default()
    };
    let server = TftpServer::bind(args.listen, Arc::new(source), config).await?;
    println!("listening on {}", server.local_addr());
    let counters = server.counters();
    tokio::select! {
        result = server.run() => result?,
        _ = tokio::signal::ctrl_c() => {}
    }
    println!(
        "served {} files, {} bytes, {} retransmits, {} duplicate ACKs, {} malformed",
        counters.served(),
        counters.bytes_sent(),
        counters.retransmits(),
        counters.duplicate_acks(),
        counters.malformed()
    );
    Ok(())
}
