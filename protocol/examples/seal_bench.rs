//! What end-to-end sealing costs per message on this machine.
//!
//!   scripts/bench-seal.sh      (cargo run --release -p edgemetal-protocol --example seal_bench)
//!
//! For a heartbeat (~100 B envelope) and two snapshots (~16 KiB, ~1 MiB) it
//! times, per message:
//!   plain   envelope encode + decode (what the link did before sealing)
//!   sealed  envelope encode + seal + parse + open + decode
//! and reports messages per second, the median latency per message, the
//! latency sealing adds (median sealed - median plain) and the ratios. The
//! seal, parse and open steps, the per-call HKDF key derivation that seal
//! and open both include, and the bare cipher are also timed on their own.
//!
//! Options (environment): SEAL_BENCH_SECS = seconds of measurement per
//! case and path (default 2; warm-up is a quarter of that).

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use edgemetal_protocol::seal::{self, FrameHeader, LinkSecret};
use edgemetal_protocol::*;

const SECRET: LinkSecret = LinkSecret([0x5a; 32]);

fn rack() -> RackId {
    RackId::new("rack-site-0042").unwrap()
}

fn header(direction: Direction, sequence: u64) -> FrameHeader {
    FrameHeader {
        version: PROTOCOL_VERSION,
        rack_id: rack(),
        direction,
        key_epoch: 1,
        sequence,
    }
}

fn heartbeat() -> Envelope<UpMessage> {
    Envelope::new(
        MessageId([0x11; 16]),
        1_700_000_000_000,
        UpMessage::Heartbeat(Heartbeat {
            uptime_secs: 86_400,
            applied_generation: Some(Generation(17)),
            services: [
                ServiceKind::Link,
                ServiceKind::Dhcp,
                ServiceKind::Tftp,
                ServiceKind::Dns,
            ]
            .into_iter()
            .map(|service| ServiceHealth {
                service,
                state: HealthState::Healthy,
                detail: String::new(),
            })
            .collect(),
            counters: vec![
                Counter {
                    name: "link_malformed_payloads_total".into(),
                    value: 3,
                },
                Counter {
                    name: "dhcp_leases_active".into(),
                    value: 118,
                },
            ],
        }),
    )
}

fn snapshot(reservations: u32) -> Envelope<DownMessage> {
    Envelope::new(
        MessageId([0x22; 16]),
        1_700_000_000_000,
        DownMessage::SnapshotV5(ConfigSnapshot {
            boot_resources: Vec::new(),
            dns: Default::default(),
            generation: Generation(18),
            subnets: vec![SubnetConfig {
                id: "subnet-1".into(),
                name: "provisioning".into(),
                cidr: "10.0.0.0/8".parse().unwrap(),
                gateway: Some(Ipv4Addr::new(10, 0, 0, 1)),
                dns_servers: vec![Ipv4Addr::new(10, 0, 0, 1)],
                domain: Some("site.example".into()),
                lease_time_secs: 3600,
                ranges: vec![IpRange {
                    start: Ipv4Addr::new(10, 1, 0, 0),
                    end: Ipv4Addr::new(10, 1, 255, 255),
                    purpose: RangePurpose::Dynamic,
                }],
                reservations: (0..reservations)
                    .map(|n| Reservation {
                        mac: MacAddress([0x52, 0x54, 0, (n >> 16) as u8, (n >> 8) as u8, n as u8]),
                        address: Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 2, 0, 0)) + n),
                        hostname: Some(format!("node-{n:06}")),
                    })
                    .collect(),
                dhcp_racks: Vec::new(),
                held_elsewhere: Vec::new(),
                services: Default::default(),
                boot: Default::default(),
                router_advertisements: Default::default(),
            }],
            gateway: Default::default(),
            machine_boot: Default::default(),
        }),
    )
}

/// A snapshot whose encoded envelope is about `target` bytes.
fn snapshot_of_size(target: usize) -> Envelope<DownMessage> {
    let base = snapshot(0).encode().unwrap().len();
    let per = snapshot(1000).encode().unwrap().len().saturating_sub(base) as f64 / 1000.0;
    snapshot(((target.saturating_sub(base)) as f64 / per).round() as u32)
}

struct Stats {
    /// Median time of one message.
    median: Duration,
    /// Messages per second over the whole measurement.
    rate: f64,
    samples: usize,
}

/// Runs `op` for a warm-up, then for `budget`, timing every call.
fn measure(budget: Duration, mut op: impl FnMut()) -> Stats {
    let warm_until = Instant::now() + budget / 4;
    let mut warm = 0;
    while warm < 3 || Instant::now() < warm_until {
        op();
        warm += 1;
    }
    let mut times = Vec::with_capacity(1 << 16);
    let start = Instant::now();
    while times.len() < 20 || start.elapsed() < budget {
        let t = Instant::now();
        op();
        times.push(t.elapsed());
    }
    let total = start.elapsed();
    let samples = times.len();
    times.sort_unstable();
    Stats {
        median: times[samples / 2],
        rate: samples as f64 / total.as_secs_f64(),
        samples,
    }
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn size(bytes: usize) -> String {
    if bytes >= 1 << 20 {
        format!("{:.2} MiB", bytes as f64 / (1 << 20) as f64)
    } else if bytes >= 1 << 10 {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    } else {
        format!("{bytes} B")
    }
}

fn bench<M>(name: &str, envelope: &Envelope<M>, direction: Direction, budget: Duration)
where
    M: serde::Serialize + serde::de::DeserializeOwned + PartialEq,
{
    let plain_bytes = envelope.encode().unwrap();
    let wire = seal::seal(&SECRET, header(direction, 1), [7; 16], &plain_bytes).unwrap();
    // The paths must round-trip before they are worth timing.
    let frame = seal::parse(&wire).unwrap();
    assert!(Envelope::<M>::decode(&seal::open(&SECRET, &frame).unwrap()).unwrap() == *envelope);

    let plain = measure(budget, || {
        let bytes = black_box(envelope).encode().unwrap();
        black_box(Envelope::<M>::decode(black_box(&bytes)).unwrap());
    });
    let mut sequence = 0u64;
    let sealed = measure(budget, || {
        sequence += 1;
        let bytes = black_box(envelope).encode().unwrap();
        let wire = seal::seal(&SECRET, header(direction, sequence), [7; 16], &bytes).unwrap();
        let frame = seal::parse(black_box(&wire)).unwrap();
        let opened = seal::open(&SECRET, &frame).unwrap();
        black_box(Envelope::<M>::decode(&opened).unwrap());
    });
    let seal_only = measure(budget / 2, || {
        sequence += 1;
        black_box(
            seal::seal(
                &SECRET,
                header(direction, sequence),
                [7; 16],
                black_box(&plain_bytes),
            )
            .unwrap(),
        );
    });
    let parse_open = measure(budget / 2, || {
        let frame = seal::parse(black_box(&wire)).unwrap();
        black_box(seal::open(&SECRET, &frame).unwrap());
    });
    let parse_only = measure(budget / 4, || {
        black_box(seal::parse(black_box(&wire)).unwrap());
    });
    let open_only = measure(budget / 4, || {
        black_box(seal::open(&SECRET, black_box(&frame)).unwrap());
    });
    // The cipher alone, as the floor any framing can reach.
    let cipher = XChaCha20Poly1305::new(Key::from_slice(&[9; 32]));
    let aead = measure(budget / 4, || {
        black_box(
            cipher
                .encrypt(
                    XNonce::from_slice(&[3; 24]),
                    black_box(plain_bytes.as_slice()),
                )
                .unwrap(),
        );
    });
    let rack = rack();
    let kdf = measure(budget / 4, || {
        black_box(seal::derive_key(black_box(&SECRET), &rack, direction, 1));
    });

    let added = us(sealed.median) - us(plain.median);
    println!(
        "{name}: envelope {}, sealed frame {} (+{} B)",
        size(plain_bytes.len()),
        size(wire.len()),
        wire.len() - plain_bytes.len()
    );
    for (label, s) in [
        ("plain  encode+decode", &plain),
        ("sealed enc+seal+parse+open+dec", &sealed),
        ("  seal only", &seal_only),
        ("  parse+open only", &parse_open),
        ("    parse only (frame bytes -> SealedFrame)", &parse_only),
        ("    open only (SealedFrame -> plaintext)", &open_only),
        ("  raw XChaCha20-Poly1305 encrypt (cipher floor)", &aead),
        ("  derive_key (HKDF), once per seal and per open", &kdf),
    ] {
        println!(
            "  {label:<48} {:>12.0} msg/s  median {:>10.2} us  ({} samples)",
            s.rate,
            us(s.median),
            s.samples
        );
    }
    let mib_s = |s: &Stats| plain_bytes.len() as f64 * s.rate / (1 << 20) as f64;
    println!(
        "  added latency per message {added:.2} us (median); sealed/plain latency {:.2}x; \
         plain/sealed throughput {:.2}x ({:.0} vs {:.0} MiB/s of envelope)",
        us(sealed.median) / us(plain.median),
        plain.rate / sealed.rate,
        mib_s(&plain),
        mib_s(&sealed),
    );
    println!();
}

fn main() {
    let secs: f64 = std::env::var("SEAL_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0);
    let budget = Duration::from_secs_f64(secs);
    if cfg!(debug_assertions) {
        eprintln!("warning: debug build; run with --release for meaningful figures\n");
    }
    println!(
        "seal_bench: {secs}s per path and case after a {:.1}s warm-up, {} logical CPUs\n",
        secs / 4.0,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    bench("heartbeat", &heartbeat(), Direction::Up, budget);
    bench(
        "snapshot ~16 KiB",
        &snapshot_of_size(16 << 10),
        Direction::Down,
        budget,
    );
    bench(
        "snapshot ~1 MiB",
        &snapshot_of_size(1 << 20),
        Direction::Down,
        budget,
    );
}
