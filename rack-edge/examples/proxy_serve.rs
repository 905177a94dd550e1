//! Runs the rack's caching proxy alone, for benchmarks
//! (hil/bench-proxy.sh): `proxy_serve CACHE_DIR LISTEN`. Without a
//! snapshot it serves loopback clients only, directly upstream, with the
//! default cache size.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(cache_dir), Some(listen)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: proxy_serve CACHE_DIR LISTEN");
    };
    let (_snapshots, snapshot_rx) = tokio::sync::watch::channel(None);
    let server = edgemetal_rack::proxy::Proxy::bind(
        listen.parse()?,
        std::path::Path::new(&cache_dir),
        snapshot_rx,
        edgemetal_rack::proxy::Counters::default(),
    )
    .await?;
    server.run().await?;
    Ok(())
}
