//! Runs the rack's HTTP boot server alone, for benchmarks
//! (hil/bench-http-boot.sh): `http_boot_serve STATE_DIR LISTEN`. Files put in
//! `STATE_DIR/boot-cache/<sha256>` are served at `/boot/resources/<sha256>`.

use std::sync::Arc;

use edgemetal_rack::boot::{http, BootCache, Decisions};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(state_dir), Some(listen)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: http_boot_serve STATE_DIR LISTEN");
    };
    let state_dir = std::path::PathBuf::from(state_dir);
    let cache = BootCache::open(&state_dir)?;
    let (queries, _unanswered) = tokio::sync::mpsc::unbounded_channel();
    let (_snapshots, snapshot_rx) = tokio::sync::watch::channel(None);
    let decisions = Arc::new(Decisions::open(
        &state_dir,
        queries,
        snapshot_rx,
        Default::default(),
    ));
    let app = http::router(http::BootHttp {
        cache,
        decisions,
        ipxe_dir: "/usr/lib/ipxe".into(),
        progress: None,
        table: edgemetal_rack::boot::table::BootTable::empty(),
        small: Default::default(),
    });
    // The rack's own listener (TCP_NODELAY on every connection), so the
    // benchmark measures what the rack serves.
    let listener = edgemetal_rack::services::http_listener(listen.parse()?).await?;
    axum::serve(listener, app).await?;
    Ok(())
}
