//! NTP end to end: a rack in a namespace follows an upstream NTP server
//! (chronyd with `local stratum 8`, in its own namespace, set by the
//! region's `EDGEMETAL_NTP_UPSTREAMS`) and serves its clock to a client
//! namespace, queried with ntpdate (ntpsec) and `chronyd -Q`, which never
//! set the clock. While the rack is unsynchronised (before the upstream
//! starts, and after it is gone and the rack restarted) clients are told
//! not to trust it. A DHCP client gets the rack as its NTP server
//! (option 42). Nothing here changes the host's clock: the rack keeps a
//! clock of its own, chronyd runs with `-x`.

use std::path::Path;
use std::process::{Output, Stdio};

use edgemetal_tests::dhcp_site::{start_rack_in, udhcpc, Guard, NamespacedRack};
use edgemetal_tests::netns::{forward_loopback_port, veth, Netns};
use edgemetal_tests::process::log_dir;
use edgemetal_tests::site::{wait_in_sync, PATIENCE};
use edgemetal_tests::{wait_until, RegionOptions, RegionProcess};
use serde_json::{json, Value};

const RACK: &str = "10.87.0.1";
const UPSTREAM: &str = "10.97.0.2";

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// `ntpdate -q` (ntpsec): one query, no clock change.
fn ntpdate(ns: &Netns) -> (bool, String) {
    edgemetal_tests::packages::ensure("/usr/sbin/ntpdate", "ntpsec-ntpdate");
    let output = ns
        .command("ntpdate")
        .args(["-q", "-t", "2", RACK])
        .stdin(Stdio::null())
        .output()
        .expect("ntpdate");
    (output.status.success(), text(&output))
}

/// `chronyd -Q`: measures the rack as a server, never sets the clock.
fn chronyd_query(ns: &Netns, dir: &Path) -> String {
    let output = ns
        .command("chronyd")
        .args(["-Q", "-t", "20", "-u", "root", "-f"])
        .arg(chrony_conf(
            dir,
            &format!("server {RACK} iburst maxsamples 4"),
            false,
        ))
        .stdin(Stdio::null())
        .output()
        .expect("chronyd");
    text(&output)
}

/// A chrony configuration in `dir` with its own pid, drift and socket files.
fn chrony_conf(dir: &Path, directives: &str, serve: bool) -> std::path::PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let conf = dir.join("chrony.conf");
    let d = dir.display();
    let serving = if serve {
        "allow all\nport 123\n"
    } else {
        "port 0\n"
    };
    std::fs::write(
        &conf,
        format!("{directives}\n{serving}cmdport 0\npidfile {d}/chronyd.pid\ndriftfile {d}/drift\n"),
    )
    .unwrap();
    conf
}

/// The rack's NTP health from its status endpoint (inside its namespace).
fn ntp_health(server: &Netns) -> Option<Value> {
    let output = server
        .command("curl")
        .args(["-s", "--max-time", "2", "http://127.0.0.1:5250/status"])
        .stdin(Stdio::null())
        .output()
        .ok()?;
    let status: Value = serde_json::from_slice(&output.stdout).ok()?;
    status["services"]
        .as_array()?
        .iter()
        .find(|service| service["service"] == "Ntp")
        .cloned()
}

async fn wait_health(server: &Netns, what: &str, detail_contains: &str) -> Value {
    wait_health_for(server, what, detail_contains, PATIENCE).await
}

async fn wait_health_for(
    server: &Netns,
    what: &str,
    detail_contains: &str,
    patience: std::time::Duration,
) -> Value {
    wait_until(what, patience, || {
        let health = ntp_health(server);
        let wanted = detail_contains.to_string();
        async move {
            health.filter(|health| {
                health["detail"]
                    .as_str()
                    .is_some_and(|detail| detail.contains(&wanted))
            })
        }
    })
    .await
}

fn restart_rack(
    rack: NamespacedRack,
    server: &Netns,
    state: &Path,
    interface: &str,
    log: &Path,
) -> NamespacedRack {
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(rack.0.id() as i32, libc::SIGTERM) };
    drop(rack);
    start_rack_in(server, state, interface, log)
}

#[tokio::test]
async fn a_rack_serves_time_from_its_upstream_and_warns_clients_while_unsynchronised() {
    edgemetal_tests::packages::ensure("/usr/sbin/chronyd", "chrony");
    edgemetal_tests::packages::ensure("/usr/sbin/ntpdate", "ntpsec-ntpdate");
    let logs = log_dir("ntp");
    let data = tempfile::tempdir().unwrap();

    // The site: the rack's namespace, a machine on the managed subnet, and
    // an upstream network where chronyd plays the site's time source.
    let server = Netns::create();
    let client = Netns::create();
    let upstream = Netns::create();
    let (server_if, client_if) = veth(&server, &client, Some(&format!("{RACK}/24")));
    let (_wan_if, upstream_if) = veth(&server, &upstream, Some("10.97.0.1/24"));
    upstream.ip(&[
        "addr",
        "add",
        &format!("{UPSTREAM}/24"),
        "dev",
        &upstream_if,
    ]);

    let mut options = RegionOptions::embedded(&data.path().join("region"), &logs);
    options
        .env
        .push(("EDGEMETAL_NTP_UPSTREAMS".into(), UPSTREAM.into()));
    let region = RegionProcess::start(&options).await;
    let api = region.client();
    let subnet = api
        .create(
            "/api/v1/subnets",
            json!({"name": "ntp-site", "cidr": "10.87.0.0/24", "gateway": RACK}),
        )
        .await;
    let id = subnet["id"].as_str().unwrap();
    api.create(
        &format!("/api/v1/subnets/{id}/ranges"),
        json!({"start": "10.87.0.100", "end": "10.87.0.150", "purpose": "dynamic"}),
    )
    .await;
    let state = data.path().join("rack");
    region.enrol_rack("ntp-rack", &state).await;
    forward_loopback_port(&server, options.embedded_broker.port());
    let rack = start_rack_in(&server, &state, &server_if, &logs.join("rack.log"));
    wait_in_sync(&api, "ntp-rack").await;

    // A machine booting on the subnet is pointed at the rack (option 42).
    let hook = data.path().join("udhcpc-ntp.sh");
    let events = data.path().join("udhcpc-ntp.txt");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\necho \"$1 ip=$ip ntpsrv=$ntpsrv\" >> {}\n\
             case $1 in bound|renew) ip addr flush dev $interface; ip addr add $ip/$mask dev $interface ;; esac\n",
            events.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    edgemetal_tests::packages::ensure("udhcpc", "udhcpc");
    let output = udhcpc(&client, &client_if, &hook, &[]);
    assert!(output.status.success(), "{}", text(&output));
    let bound = std::fs::read_to_string(&events).unwrap();
    let line = bound
        .lines()
        .find(|line| line.starts_with("bound"))
        .unwrap_or_default();
    assert!(line.contains(&format!("ntpsrv={RACK}")), "{bound}");

    // No upstream is up yet: the rack answers, but says its clock is not
    // to be trusted (leap indicator 3, stratum 16).
    let unsynchronised = wait_health(
        &server,
        "the rack to report NTP unsynchronised",
        "unsynchronised",
    )
    .await;
    assert_eq!(unsynchronised["state"], "Degraded", "{unsynchronised}");
    let (trusted, answer) = ntpdate(&client);
    assert!(!trusted, "ntpdate trusted an unsynchronised rack: {answer}");
    // ntpsec's ntpdate (ntpdig) says so; the classic one says "no server suitable".
    assert!(
        answer.contains("no eligible servers") || answer.contains("no server suitable"),
        "{answer}"
    );
    let measured = chronyd_query(&client, &data.path().join("chrony-client-1"));
    assert!(
        measured.contains("No suitable source") || measured.contains("unsynchronised"),
        "{measured}"
    );

    // The upstream starts: the rack follows it and serves at stratum 9.
    let upstream_dir = data.path().join("chrony-upstream");
    let chrony = Guard(
        upstream
            .command("chronyd")
            // -x: never touch the (shared) system clock; -d: foreground.
            .args(["-d", "-x", "-u", "root", "-f"])
            .arg(chrony_conf(&upstream_dir, "local stratum 8", true))
            .stdout(std::fs::File::create(logs.join("chronyd-upstream.log")).unwrap())
            .stderr(std::fs::File::create(logs.join("chronyd-upstream.err")).unwrap())
            .spawn()
            .expect("chronyd"),
    );
    // The rack polls every 16 s at first, and claims sync only once two
    // samples have pinned down its frequency as well as its offset.
    let synchronised = wait_health_for(
        &server,
        "the rack to synchronise to chronyd",
        "synchronised to",
        std::time::Duration::from_secs(180),
    )
    .await;
    assert_eq!(synchronised["state"], "Healthy", "{synchronised}");
    let detail = synchronised["detail"].as_str().unwrap();
    assert!(
        detail.contains(UPSTREAM) && detail.contains("stratum 9"),
        "{detail}"
    );

    let (trusted, answer) = ntpdate(&client);
    assert!(trusted, "{answer}");
    // ntpsec's ntpdate: "<date> (+0000) +0.000123 +/- 0.000456 10.87.0.1 s9 no-leap"
    let sample = answer
        .lines()
        .find(|line| line.contains(RACK))
        .unwrap_or_else(|| panic!("no sample in {answer}"));
    assert!(sample.contains(" s9 "), "{sample}");
    assert!(sample.contains("no-leap"), "{sample}");
    let offset: f64 = sample
        .split_whitespace()
        .find_map(|word| {
            word.strip_prefix('+')
                .or(word.strip_prefix('-'))
                .filter(|_| word.contains('.'))
        })
        .and_then(|offset| offset.parse().ok())
        .unwrap_or_else(|| panic!("no offset in {sample}"));
    assert!(
        offset < 0.1,
        "the rack is {offset} s off a clock it shares: {sample}"
    );

    let measured = chronyd_query(&client, &data.path().join("chrony-client-2"));
    assert!(measured.contains("System clock wrong by"), "{measured}");

    let metrics = String::from_utf8_lossy(
        &server
            .command("curl")
            .args(["-s", "http://127.0.0.1:5250/metrics"])
            .output()
            .unwrap()
            .stdout,
    )
    .into_owned();
    assert!(
        metrics.contains("edgemetal_rack_ntp_synchronised 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("edgemetal_rack_ntp_responses_total{kind=\"time\"}"),
        "{metrics}"
    );

    // The upstream goes away and the rack restarts: it has nothing to
    // follow, and says so to its clients again.
    drop(chrony);
    let _rack = restart_rack(
        rack,
        &server,
        &state,
        &server_if,
        &logs.join("rack-restarted.log"),
    );
    wait_health(
        &server,
        "the restarted rack to report NTP unsynchronised",
        "unsynchronised",
    )
    .await;
    let (trusted, answer) = ntpdate(&client);
    assert!(!trusted, "ntpdate trusted an unsynchronised rack: {answer}");
    // ntpsec's ntpdate (ntpdig) says so; the classic one says "no server suitable".
    assert!(
        answer.contains("no eligible servers") || answer.contains("no server suitable"),
        "{answer}"
    );
}
