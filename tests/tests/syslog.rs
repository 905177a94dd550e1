//! The rack's syslog relay with real senders: util-linux `logger` (UDP and
//! TCP, RFC 5424 and RFC 3164, both TCP framings) and busybox `syslogd -R`
//! fed by busybox `logger`, from a machine whose address the rack leased.
//! The lines appear in the region's API under that machine with their
//! severity and text; a malformed line is kept and flagged; a long one is
//! cut; a sender outside the served subnets is refused; and with the region
//! down, lines wait on the rack's disk (across a rack restart) until it is back.

use edgemetal_tests::dhcp_site::{field, start_rack_in, udhcpc, udhcpc_script};
use edgemetal_tests::lan::Lan;
use edgemetal_tests::netns::{bridge, forward_loopback_port, plug, run_in, veth, Netns};
use edgemetal_tests::process::log_dir;
use edgemetal_tests::site::{wait_in_sync, PATIENCE};
use edgemetal_tests::{packages, wait_until, RegionOptions, RegionProcess};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const MACHINE_MAC: &str = "02:00:00:00:8a:01";
const RACK: &str = "10.91.0.1";
/// The region's limit for the test, so a long line is easy to make.
const MAX_MESSAGE_BYTES: usize = 600;

/// util-linux logger in `ns`, to the rack.
fn logger(ns: &Netns, args: &[&str], message: &str) {
    let output = ns
        .command("logger")
        .args(["--server", RACK, "--port", "514", "--size", "8192"])
        .args(args)
        .arg(message)
        .output()
        .expect("logger (package bsdutils)");
    assert!(output.status.success(), "{output:?}");
}

/// A datagram of raw bytes from `ns` to the rack's syslog port.
fn raw_udp(ns: &Netns, to: &str, text: &str) {
    let output = ns
        .command("bash")
        .args([
            "-c",
            &format!("printf '%s' \"$1\" > /dev/udp/{to}/514"),
            "raw",
            text,
        ])
        .output()
        .expect("bash");
    assert!(output.status.success(), "{output:?}");
}

/// The machine's log lines, newest first (first page of 1000).
async fn lines(api: &edgemetal_tests::ApiClient, id: &str, query: &str) -> Vec<Value> {
    let page = api
        .get(&format!("/api/v1/machines/{id}/logs?limit=1000{query}"))
        .await;
    page["lines"].as_array().cloned().unwrap_or_default()
}

/// Waits until a line of the machine contains `mark`, and returns it.
async fn line_with(api: &edgemetal_tests::ApiClient, id: &str, mark: &str) -> Value {
    wait_until(&format!("a log line with {mark:?}"), PATIENCE, || async {
        lines(api, id, "")
            .await
            .into_iter()
            .find(|l| l["text"].as_str().is_some_and(|t| t.contains(mark)))
    })
    .await
}

/// Busybox syslogd forwarding to the rack, and busybox logger writing to
/// it, inside `ns` with a private /dev (so /dev/log is theirs alone).
fn busybox_syslogd_logger(ns: &Netns, message: &str) -> std::process::Child {
    let script = format!(
        "mount -t tmpfs tmpfs /dev || exit 1
         mknod -m 666 /dev/null c 1 3
         busybox syslogd -n -R {RACK}:514 & pid=$!
         trap 'kill $pid; exit 0' TERM
         i=0; while [ ! -S /dev/log ]; do sleep 0.05; i=$((i+1)); [ $i -gt 400 ] && exit 1; done
         busybox logger -t bbtest -p daemon.err \"$1\"
         wait"
    );
    ns.command("sh")
        .args(["-c", &script, "busybox", message])
        .spawn()
        .expect("sh")
}

#[tokio::test]
async fn machine_logs_reach_the_region_from_logger_and_busybox_syslogd() {
    packages::ensure("logger", "bsdutils");
    packages::ensure("busybox", "busybox-static");
    packages::ensure("udhcpc", "udhcpc");
    packages::ensure("curl", "curl");
    let logs = log_dir("syslog");
    let data = tempfile::tempdir().unwrap();
    let mut options = RegionOptions::embedded(&data.path().join("region"), &logs);
    options.env.push((
        "EDGEMETAL_SYSLOG_MAX_MESSAGE_BYTES".into(),
        MAX_MESSAGE_BYTES.to_string(),
    ));
    let region = RegionProcess::start(&options).await;
    let api = region.client();
    let subnet = api
        .create(
            "/api/v1/subnets",
            json!({"name": "log-site", "cidr": "10.91.0.0/24", "gateway": RACK,
                   "lease_time_secs": 600}),
        )
        .await;
    api.create(
        &format!("/api/v1/subnets/{}/ranges", subnet["id"].as_str().unwrap()),
        json!({"start": "10.91.0.100", "end": "10.91.0.150", "purpose": "dynamic"}),
    )
    .await;
    // A second subnet whose machines get no syslog relay.
    api.create(
        "/api/v1/subnets",
        json!({"name": "quiet-site", "cidr": "10.92.0.0/24",
               "services": {"syslog": false, "proxy": true, "ntp": true}}),
    )
    .await;
    let machine = api
        .create(
            "/api/v1/machines",
            json!({"mac": MACHINE_MAC, "hostname": "log-node", "architecture": "amd64"}),
        )
        .await;
    let id = machine["id"].as_str().unwrap().to_string();

    let state = data.path().join("rack");
    let lan = Lan::enrol(
        &region,
        &options,
        "log-rack",
        &state,
        ("02:00:00:00:8a:0a", "10.91.0.1/24"),
    )
    .await;
    // A stranger on its own link to the rack, in the subnet without syslog.
    let stranger = Netns::create();
    let (_, stranger_nic) = veth(&lan.rack_ns, &stranger, Some("10.92.0.1/24"));
    stranger.ip(&["addr", "add", "10.92.0.50/24", "dev", &stranger_nic]);
    let rack = lan.start_rack(&region, &logs.join("rack.log")).await;
    let (machine_ns, machine_nic) = lan.plug_machine(MACHINE_MAC, None);
    let hooks = tempfile::tempdir().unwrap();
    let (script, events) = udhcpc_script(hooks.path());
    let output = udhcpc(&machine_ns, &machine_nic, &script, &[]);
    assert!(output.status.success(), "{output:?}");
    let bound = std::fs::read_to_string(&events).unwrap();
    let lease = bound.lines().find(|l| l.starts_with("bound")).unwrap();
    let address = field(lease, "ip").to_string();
    assert!(address.starts_with("10.91.0."), "{lease}");

    // util-linux logger: RFC 5424 over UDP, RFC 3164 over TCP in both framings.
    logger(
        &machine_ns,
        &[
            "--udp",
            "--rfc5424",
            "-p",
            "daemon.warning",
            "-t",
            "app5424",
        ],
        "disk almost full on sda (5424 udp)",
    );
    logger(
        &machine_ns,
        &["--tcp", "--rfc3164", "-p", "user.info", "-t", "app3164"],
        "hello over tcp, newline framed",
    );
    logger(
        &machine_ns,
        &[
            "--tcp",
            "--octet-count",
            "--rfc5424",
            "-p",
            "local3.notice",
            "-t",
            "counted",
        ],
        "hello over tcp, octet counted",
    );
    let warning = line_with(&api, &id, "disk almost full").await;
    assert_eq!(warning["severity"], "warning", "{warning}");
    assert_eq!(warning["facility"], "daemon", "{warning}");
    assert_eq!(warning["app_name"], "app5424", "{warning}");
    assert_eq!(warning["text"], "disk almost full on sda (5424 udp)");
    assert_eq!(warning["malformed"], false);
    assert_eq!(warning["rack_id"], "log-rack");
    assert_eq!(warning["source"], address.as_str());
    assert!(
        warning["time_ms"].is_i64(),
        "RFC 5424 carries a time: {warning}"
    );
    let info = line_with(&api, &id, "newline framed").await;
    assert_eq!(info["severity"], "info", "{info}");
    assert_eq!(info["app_name"], "app3164", "{info}");
    let counted = line_with(&api, &id, "octet counted").await;
    assert_eq!(
        (counted["severity"].as_str(), counted["facility"].as_str()),
        (Some("notice"), Some("local3")),
        "{counted}"
    );

    // busybox syslogd -R, fed by busybox logger.
    let mut busybox = busybox_syslogd_logger(&machine_ns, "busybox says the fan failed");
    let relayed = line_with(&api, &id, "busybox says the fan failed").await;
    let _ = std::process::Command::new("kill")
        .arg(busybox.id().to_string())
        .status();
    let _ = busybox.wait();
    assert_eq!(relayed["severity"], "err", "{relayed}");
    assert_eq!(relayed["malformed"], false, "{relayed}");

    // Filters: severity warning or worse, text, and the cursor.
    let severe = lines(&api, &id, "&severity=warning").await;
    assert!(severe
        .iter()
        .any(|l| l["text"].as_str().unwrap().contains("disk almost full")));
    assert!(
        severe.iter().all(|l| l["text"] != info["text"]),
        "{severe:?}"
    );
    let found = lines(&api, &id, "&contains=FAN%20FAILED").await;
    assert_eq!(found.len(), 1, "{found:?}");
    let page = api
        .get(&format!("/api/v1/machines/{id}/logs?limit=2"))
        .await;
    let first: Vec<i64> = page["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["id"].as_i64().unwrap())
        .collect();
    assert_eq!(first.len(), 2);
    assert!(first[0] > first[1], "newest first: {page}");
    let cursor = page["next_before_id"].as_i64().expect("a next page");
    let next = lines(&api, &id, &format!("&before_id={cursor}")).await;
    assert!(next.iter().all(|l| l["id"].as_i64().unwrap() < cursor));
    for bad in [
        "severity=loud",
        "limit=0",
        "limit=5000",
        "since_ms=10&until_ms=5",
        "since_ms=soon",
    ] {
        let (status, body) = api
            .call(
                Method::GET,
                &format!("/api/v1/machines/{id}/logs?{bad}"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert!(body["code"].is_string(), "{body}");
    }
    let (status, _) = api
        .call(Method::GET, "/api/v1/machines/no-such-machine/logs", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Not syslog at all: kept raw, flagged. Too long: cut at the limit.
    raw_udp(&machine_ns, RACK, "this is not syslog, just bytes");
    let raw = line_with(&api, &id, "just bytes").await;
    assert_eq!(raw["malformed"], true, "{raw}");
    assert_eq!(raw["text"], "this is not syslog, just bytes");
    assert!(raw["severity"].is_null());
    let long = format!("long-line {}", "x".repeat(3 * MAX_MESSAGE_BYTES));
    logger(
        &machine_ns,
        &["--tcp", "--octet-count", "-t", "long"],
        &long,
    );
    let cut = line_with(&api, &id, "long-line").await;
    assert_eq!(cut["truncated"], true, "{cut}");
    assert!(
        cut["text"].as_str().unwrap().len() < MAX_MESSAGE_BYTES,
        "{cut}"
    );

    // A sender in a subnet without the relay is refused and counted.
    raw_udp(&stranger, "10.92.0.1", "<11>stranger danger");
    let metrics = || {
        let output = lan
            .rack_ns
            .command("curl")
            .args(["-s", "http://127.0.0.1:5250/metrics"])
            .output()
            .expect("curl");
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    wait_until("the stranger to be refused", PATIENCE, || async {
        metrics()
            .lines()
            .any(|l| l.starts_with("edgemetal_rack_syslog_refused_total") && !l.ends_with(" 0"))
            .then_some(())
    })
    .await;
    let text = metrics();
    for name in [
        "edgemetal_rack_syslog_received_total",
        "edgemetal_rack_syslog_truncated_total",
        "edgemetal_rack_syslog_malformed_total",
        "edgemetal_rack_syslog_dropped_full_total",
        "edgemetal_rack_syslog_forwarded_total",
    ] {
        assert!(text.contains(name), "{name} missing from\n{text}");
    }
    let status: Value = serde_json::from_str(&String::from_utf8_lossy(
        &lan.rack_ns
            .command("curl")
            .args(["-s", "http://127.0.0.1:5250/status"])
            .output()
            .unwrap()
            .stdout,
    ))
    .unwrap();
    assert!(status.to_string().contains("Syslog"), "{status}");

    // The region goes away; lines wait on the rack's disk, also across a
    // rack restart, and arrive when the region is back.
    region.kill();
    logger(
        &machine_ns,
        &["--udp", "-p", "daemon.crit", "-t", "cut"],
        "written while the region was down (udp)",
    );
    logger(
        &machine_ns,
        &["--tcp", "-p", "daemon.crit", "-t", "cut"],
        "written while the region was down (tcp)",
    );
    // Both are on disk before the rack stops: its queue file holds them.
    wait_until(
        "the lines to be queued on the rack's disk",
        PATIENCE,
        || async {
            let queued =
                std::fs::read_to_string(state.join("syslog-queue.jsonl")).unwrap_or_default();
            (queued.contains("region was down (udp)") && queued.contains("region was down (tcp)"))
                .then_some(())
        },
    )
    .await;
    drop(rack);
    let _rack = start_rack_in(
        &lan.rack_ns,
        &state,
        &lan.rack_nic,
        &logs.join("rack-restarted.log"),
    );
    let region = RegionProcess::start(&options).await;
    let api = region.client();
    for mark in ["region was down (udp)", "region was down (tcp)"] {
        let line = line_with(&api, &id, mark).await;
        assert_eq!(line["severity"], "crit", "{line}");
    }
}

/// Sends `count` RFC 3164 datagrams from `ns` to `target`, paced at `rate`
/// per second (in 1 ms bursts).
fn send_paced(ns: &Netns, target: std::net::SocketAddr, rate: u64, count: u64, tag: String) {
    run_in(ns, move || {
        let socket = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        let start = std::time::Instant::now();
        let per_ms = (rate / 1000).max(1);
        let mut sent = 0u64;
        while sent < count {
            let burst = per_ms.min(count - sent);
            for _ in 0..burst {
                let message = format!(
                    "<14>Nov 28 20:00:00 benchhost bench[42]: {tag} message {sent} \
                     of a steady stream, padded to a typical log line length"
                );
                let _ = socket.send_to(message.as_bytes(), target);
                sent += 1;
            }
            let due = std::time::Duration::from_micros(sent * 1_000_000 / rate);
            if let Some(wait) = due.checked_sub(start.elapsed()) {
                std::thread::sleep(wait);
            }
        }
    })
}

/// Polls `count` until it reaches `want` or stops moving for two seconds.
async fn settle(mut count: impl FnMut() -> u64, want: u64) -> u64 {
    let mut last = count();
    let mut still = 0;
    while last < want && still < 10 {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let now = count();
        still = if now == last { still + 1 } else { 0 };
        last = now;
    }
    last
}

/// The value of a Prometheus counter line in `text`.
fn counter(text: &str, name: &str) -> u64 {
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

#[tokio::test]
#[ignore = "benchmark: run with hil/bench-syslog.sh"]
async fn syslog_messages_per_second_against_rsyslog() {
    packages::ensure("rsyslogd", "rsyslog");
    let env = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
    let rates: Vec<u64> = env("BENCH_RATES", "5000,10000,20000,40000,80000,160000")
        .split(',')
        .filter_map(|r| r.trim().parse().ok())
        .collect();
    let secs: u64 = env("BENCH_SECS", "3").parse().unwrap();
    let logs = log_dir("syslog_bench");
    let data = tempfile::tempdir().unwrap();
    let mut options = RegionOptions::embedded(&data.path().join("region"), &logs);
    // Room for every message of the run on the rack's disk.
    options.env.push((
        "EDGEMETAL_SYSLOG_QUEUE_BYTES".into(),
        (8u64 << 30).to_string(),
    ));
    let region = RegionProcess::start(&options).await;
    let api = region.client();
    api.create(
        "/api/v1/subnets",
        json!({"name": "bench-site", "cidr": "10.93.0.0/24", "gateway": "10.93.0.1"}),
    )
    .await;
    let state = data.path().join("rack");
    region.enrol_rack("bench-rack", &state).await;
    let lan = Netns::create();
    let switch = bridge(&lan);
    let server_ns = Netns::create();
    let server_nic = plug(
        &lan,
        &switch,
        &server_ns,
        "02:00:00:00:93:0a",
        Some("10.93.0.1/24"),
    );
    forward_loopback_port(&server_ns, options.embedded_broker.port());
    let sender = Netns::create();
    plug(
        &lan,
        &switch,
        &sender,
        "02:00:00:00:93:0b",
        Some("10.93.0.50/24"),
    );
    let _rack = start_rack_in(&server_ns, &state, &server_nic, &logs.join("rack.log"));
    wait_in_sync(&api, "bench-rack").await;

    // rsyslog: imudp on another port of the same address, every line to a file.
    let work = data.path().join("rsyslog");
    std::fs::create_dir_all(&work).unwrap();
    let out = work.join("messages.log");
    let conf = work.join("rsyslog.conf");
    std::fs::write(
        &conf,
        format!(
            "global(workDirectory=\"{dir}\")\n\
             module(load=\"imudp\")\n\
             input(type=\"imudp\" address=\"10.93.0.1\" port=\"1514\")\n\
             *.* action(type=\"omfile\" file=\"{out}\")\n",
            dir = work.display(),
            out = out.display()
        ),
    )
    .unwrap();
    let mut rsyslog = server_ns
        .command("rsyslogd")
        .args(["-n", "-i"])
        .arg(work.join("rsyslogd.pid"))
        .arg("-f")
        .arg(&conf)
        .stdout(std::fs::File::create(logs.join("rsyslogd.log")).unwrap())
        .stderr(std::fs::File::create(logs.join("rsyslogd.err")).unwrap())
        .spawn()
        .expect("rsyslogd");
    let rsyslog_lines = || {
        std::fs::read(&out)
            .map(|b| b.iter().filter(|&&c| c == b'\n').count() as u64)
            .unwrap_or(0)
    };
    // Ready when a probe line arrives.
    let probe: std::net::SocketAddr = "10.93.0.1:1514".parse().unwrap();
    wait_until("rsyslogd to write", PATIENCE, || {
        send_paced(&sender, probe, 1000, 1, "probe".into());
        async { (rsyslog_lines() > 0).then_some(()) }
    })
    .await;
    let rack_metrics = || {
        let output = server_ns
            .command("curl")
            .args(["-s", "http://127.0.0.1:5250/metrics"])
            .output()
            .expect("curl");
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let rack_received = || counter(&rack_metrics(), "edgemetal_rack_syslog_received_total");

    let mut best = [0u64; 2];
    println!(
        "{:>10} {:>14} {:>14}",
        "offered/s", "edgemetal lost", "rsyslog lost"
    );
    for &rate in &rates {
        let count = rate * secs;
        let mut lost = [0u64; 2];
        for (i, port) in [514u16, 1514].into_iter().enumerate() {
            let target = std::net::SocketAddr::new("10.93.0.1".parse().unwrap(), port);
            let before = if i == 0 {
                rack_received()
            } else {
                rsyslog_lines()
            };
            send_paced(&sender, target, rate, count, format!("r{rate}"));
            let after = if i == 0 {
                settle(rack_received, before + count).await
            } else {
                settle(rsyslog_lines, before + count).await
            };
            lost[i] = (before + count).saturating_sub(after);
            if lost[i] == 0 {
                best[i] = best[i].max(rate);
            }
        }
        println!("{rate:>10} {:>14} {:>14}", lost[0], lost[1]);
    }
    let full = counter(&rack_metrics(), "edgemetal_rack_syslog_dropped_full_total");
    assert_eq!(full, 0, "the rack's queue bound was reached: raise it");
    let _ = rsyslog.kill();
    let _ = rsyslog.wait();
    println!(
        "highest rate with none lost: edgemetal {} msg/s, rsyslog (imudp → file) {} msg/s, ratio {:.2}",
        best[0],
        best[1],
        best[0] as f64 / best[1].max(1) as f64
    );
}
