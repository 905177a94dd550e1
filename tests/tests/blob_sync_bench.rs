//! Benchmark (ignored in CI): one 1 GiB boot resource synced from the region
//! (embedded broker) to a fresh rack straight on loopback, through the WAN
//! proxy at 0 and 300 ms RTT, and once with `--blob-rate-limit`; prints MB/s
//! and the region's RSS (idle before, peak during each sync).
//!
//! `cargo build --release --workspace && cargo test -p edgemetal-tests
//! --release --test blob_sync_bench -- --ignored --nocapture`

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use edgemetal_tests::boot_files::{content, upload};
use edgemetal_tests::process::log_dir;
use edgemetal_tests::site::wait_in_sync;
use edgemetal_tests::{wait_until, RackProcess, RegionOptions, RegionProcess, Wan};

const SIZE: usize = 1 << 30;

/// MB/s of writing `SIZE` bytes in 512 KiB pieces to a fresh file in `dir`
/// and syncing it: the ceiling a rack's cache write sets on this machine
/// (fresh page-cache pages are slow to come by in some VMs).
fn local_write_rate(dir: &std::path::Path) -> f64 {
    use std::io::Write;
    let path = dir.join("local-write-reference");
    let piece = content(512 * 1024, 3);
    let started = Instant::now();
    let mut file = std::fs::File::create(&path).unwrap();
    for _ in 0..SIZE / piece.len() {
        file.write_all(&piece).unwrap();
    }
    file.sync_data().unwrap();
    let seconds = started.elapsed().as_secs_f64();
    std::fs::remove_file(&path).unwrap();
    mb(SIZE as u64) / seconds
}

/// Resident memory of `pid` in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map_or(0, |kib| kib * 1024)
}

/// Samples `pid`'s RSS every 50 ms until `stop`; the peak.
fn sample_peak(pid: u32, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let peak = AtomicU64::new(0);
        while !stop.load(Ordering::Relaxed) {
            peak.fetch_max(rss(pid), Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(50));
        }
        peak.load(Ordering::Relaxed)
    })
}

struct Run {
    name: &'static str,
    /// From the rack's start to the resource verified.
    seconds: f64,
    /// Of which before the rack applied its snapshot (connect, TLS, hello).
    connecting: f64,
    peak_rss: u64,
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "benchmark"]
async fn one_gib_resource_syncs_at_0_and_300_ms_rtt() {
    let logs = log_dir("bench_blob_sync");
    let data = tempfile::tempdir().unwrap();
    let options = RegionOptions::embedded(&data.path().join("region"), &logs);
    let region = RegionProcess::start(&options).await;
    let api = region.client();
    upload(&api, "initrd", &content(SIZE, 7)).await;
    let wan = Wan::start(options.embedded_broker, Duration::ZERO).await;
    let via_wan = format!("mqtts://127.0.0.1:{}", wan.address().port());
    let direct = format!("mqtts://{}", options.embedded_broker);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = rss(region.pid());
    let local = local_write_rate(data.path());

    let cap = std::env::var("BLOB_BENCH_CAP").unwrap_or_else(|_| "20M".into());
    let scenarios: [(&'static str, &str, Duration, Option<&str>); 4] = [
        ("loopback, direct", &direct, Duration::ZERO, None),
        ("WAN proxy, 0 ms RTT", &via_wan, Duration::ZERO, None),
        (
            "WAN proxy, 300 ms RTT",
            &via_wan,
            Duration::from_millis(150),
            None,
        ),
        ("loopback, capped", &direct, Duration::ZERO, Some(&cap)),
    ];
    let mut runs = Vec::new();
    for (index, (name, broker, one_way, limit)) in scenarios.into_iter().enumerate() {
        wan.set_delay(one_way);
        let rack_name = format!("bench-rack-{index}");
        let state = data.path().join(&rack_name);
        region.enrol_rack(&rack_name, &state).await;
        let mut args = vec!["--broker-url", broker];
        if let Some(limit) = limit {
            args.extend(["--blob-rate-limit", limit]);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let sampler = sample_peak(region.pid(), stop.clone());
        let started = Instant::now();
        let rack =
            RackProcess::start_with(&state, &logs.join(format!("{rack_name}.log")), &args).await;
        wait_in_sync(&api, &rack_name).await;
        let connecting = started.elapsed().as_secs_f64();
        wait_until("the resource cached", Duration::from_secs(900), || async {
            let status = rack.status().await;
            let resources = status["boot_resources"].as_array()?.clone();
            (resources.len() == 1 && resources[0]["ready"] == true).then_some(())
        })
        .await;
        let seconds = started.elapsed().as_secs_f64();
        stop.store(true, Ordering::Relaxed);
        let peak_rss = sampler.join().unwrap();
        rack.kill();
        println!(
            "{name}: {:.1} MB/s ({seconds:.1} s), region RSS peak {:.0} MB",
            mb(SIZE as u64) / seconds,
            mb(peak_rss)
        );
        runs.push(Run {
            name,
            seconds,
            connecting,
            peak_rss,
        });
        // Let the region settle before the next sync.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }

    println!("\n| sync of 1 GiB | MB/s | seconds | of which connecting | region RSS peak (MB) |");
    println!("|---|---|---|---|---|");
    for run in &runs {
        println!(
            "| {} | {:.1} | {:.1} | {:.1} | {:.0} |",
            run.name,
            mb(SIZE as u64) / run.seconds,
            run.seconds,
            run.connecting,
            mb(run.peak_rss)
        );
    }
    let rate = |i: usize| mb(SIZE as u64) / runs[i].seconds;
    println!(
        "| local write of 1 GiB to a fresh file (reference) | {local:.1} | {:.1} | | |",
        mb(SIZE as u64) / local
    );
    println!(
        "\nregion RSS idle {:.0} MB, peak {:.0} MB (+{:.0} MB); 300 ms / 0 ms (WAN proxy): {:.2}",
        mb(idle),
        mb(runs.iter().map(|r| r.peak_rss).max().unwrap_or(0)),
        mb(runs
            .iter()
            .map(|r| r.peak_rss)
            .max()
            .unwrap_or(0)
            .saturating_sub(idle)),
        rate(2) / rate(1)
    );
}
