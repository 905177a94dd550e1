//! Runs the rack's IPv6 Router Solicitation responder alone, for manual
//! tests (needs CAP_NET_RAW):
//!
//! ```sh
//! cargo run -p edgemetal-rack --example ndp_responder -- eth1 eth2
//! ```
//!
//! Prints `answering on IF...` once the sockets are bound, then the counters
//! every few seconds while they change.

use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use edgemetal_rack::ndp::{self, Counters, DropReason};

#[derive(Parser)]
struct Args {
    /// Interfaces to answer on.
    #[arg(required = true)]
    interfaces: Vec<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let counters = Arc::new(Counters::default());
    let serving = ndp::serve(
        args.interfaces.clone(),
        counters.clone(),
        ndp::LinkPolicy::always(),
    );
    tokio::pin!(serving);
    let mut report = tokio::time::interval(Duration::from_secs(2));
    let mut last = None;
    println!("answering on {}", args.interfaces.join(" "));
    loop {
        tokio::select! {
            result = &mut serving => return result,
            _ = report.tick() => {
                let now = (counters.received(), counters.sent(), counters.send_failed());
                if last != Some(now) {
                    last = Some(now);
                    let dropped: Vec<_> = DropReason::ALL
                        .iter()
                        .filter(|r| counters.dropped(**r) > 0)
                        .map(|r| format!("{}={}", r.as_str(), counters.dropped(*r)))
                        .collect();
                    println!(
                        "received={} sent={} send_failed={} dropped=[{}]",
                        now.0, now.1, now.2, dropped.join(" ")
                    );
                }
            }
        }
    }
}
