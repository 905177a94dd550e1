//! The rack's DNS server against real peers: dig (BIND 9) as the client,
//! dnsmasq as the upstream, plus an upstream address that never answers
//! (listed first, so every forwarded question exercises failover).
//!
//! The server runs in-process on 127.0.0.1 with a free port (UDP and TCP
//! on the same port, as dig expects). The ACL check needs a non-loopback
//! client: it runs the server inside a network namespace of its own and
//! dig in a second one, joined by a veth pair; both namespaces are deleted
//! by a Drop guard whatever the outcome. Peers and clients are
//! subprocesses with deadlines and are killed on drop. Debian packages:
//! bind9-dnsutils (dig), dnsmasq, iproute2.

use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use edgemetal_protocol::{ConfigSnapshot, DnsConfig, DnsRecord, Generation, RecordData, Zone};
use edgemetal_rack::dns::{Counters, DnsServer, Outcome, ServerConfig, UpstreamEvent};
use tempfile::TempDir;
use tokio::process::{Child, Command};
use tokio::sync::watch;

/// Longest one dig run may take.
const DIG_DEADLINE: Duration = Duration::from_secs(20);
/// How long the silent upstream gets before the server fails over.
const UPSTREAM_TIMEOUT: Duration = Duration::from_millis(700);
const FORWARDED: &str = "ext.upstream.test";
const FORWARDED_ADDRESS: &str = "192.0.2.55";

fn record(name: &str, data: RecordData) -> DnsRecord {
    DnsRecord {
        name: name.into(),
        ttl: 300,
        data,
    }
}

/// Eight strings of 200 bytes: about 1.7 kB, more than dig's 1232.
fn big_strings() -> Vec<String> {
    (0..8).map(|n| format!("{n}{}", "x".repeat(199))).collect()
}

/// The region's default `[dns] allowed_networks`: programs on the rack host.
const LOOPBACK_ONLY: &str = "127.0.0.0/8";

fn dns_config(forwarders: Vec<SocketAddr>, allowed: &str) -> DnsConfig {
    let a = |name: &str, last: u8| record(name, RecordData::A([10, 77, 0, last].into()));
    let site = Zone {
        name: "site.test".into(),
        serial: 2024,
        negative_ttl: 60,
        records: vec![
            a("host1.site.test", 11),
            a("host2.site.test", 12),
            a("pool.site.test", 21),
            a("pool.site.test", 22),
            a("pool.site.test", 23),
            a("pool.site.test", 24),
            record("big.site.test", RecordData::Txt(big_strings())),
        ],
    };
    let reverse = Zone {
        name: "0.77.10.in-addr.arpa".into(),
        serial: 2024,
        negative_ttl: 60,
        records: vec![record(
            "11.0.77.10.in-addr.arpa",
            RecordData::Ptr("host1.site.test".into()),
        )],
    };
    DnsConfig {
        zones: vec![site, reverse],
        forwarders,
        allowed_networks: allowed
            .split_whitespace()
            .map(|c| c.parse().unwrap())
            .collect(),
    }
}

fn snapshot(dns: DnsConfig) -> ConfigSnapshot {
    ConfigSnapshot {
        generation: Generation(1),
        subnets: Vec::new(),
        boot_resources: Vec::new(),
        dns,
        gateway: Default::default(),
        machine_boot: Default::default(),
    }
}

fn server_config() -> ServerConfig {
    let mut config = ServerConfig::default();
    config.tuning.upstream_timeout = UPSTREAM_TIMEOUT;
    config
}

/// A process killed when dropped.
struct Peer(Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.start_kill();
    }
}

/// A port free for UDP and TCP on 127.0.0.1 right now.
fn free_port() -> u16 {
    loop {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// dnsmasq answering from local data (an A record and a TXT record too big
/// for one UDP answer) on 127.0.0.1, plus a socket on 127.0.0.2 with the
/// same port that never answers; returns both and the port. A port taken
/// between picking and binding (tests run in parallel) means another try.
async fn upstreams() -> (Peer, UdpSocket, u16) {
    for _ in 0..5 {
        let port = free_port();
        // Bound and never read: queries to it vanish without an ICMP error.
        let Ok(silent) = UdpSocket::bind(("127.0.0.2", port)) else {
            continue;
        };
        let mut peer = Peer(spawn_dnsmasq(port));
        for _ in 0..100 {
            if let Ok(Some(_exited)) = peer.0.try_wait() {
                break;
            }
            let out = dig_at(port, &[FORWARDED, "+short", "+time=1", "+tries=1"]).await;
            if out.trim() == FORWARDED_ADDRESS {
                return (peer, silent, port);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut stderr = String::new();
        if let Some(mut pipe) = peer.0.stderr.take() {
            use tokio::io::AsyncReadExt;
            let _ = tokio::time::timeout(Duration::from_secs(1), pipe.read_to_string(&mut stderr))
                .await;
        }
        eprintln!("dnsmasq did not come up on port {port}: {stderr}");
    }
    panic!("dnsmasq did not come up (see above)");
}

fn spawn_dnsmasq(port: u16) -> Child {
    // dnsmasq splits the strings at commas and keeps quotes literally.
    let txt = big_strings().join(",");
    Command::new("dnsmasq")
        .args([
            "--no-daemon",
            "--no-resolv",
            "--no-hosts",
            "--conf-file=/dev/null",
            "--log-facility=-",
            "--pid-file=",
            "--listen-address=127.0.0.1",
            "--bind-interfaces",
            "--local-ttl=300",
        ])
        .arg(format!("--port={port}"))
        .arg(format!("--host-record={FORWARDED},{FORWARDED_ADDRESS}"))
        .arg(format!("--txt-record=bigtxt.upstream.test,{txt}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("run dnsmasq (install the dnsmasq package)")
}

/// Runs dig against 127.0.0.1:`port`; its output, whatever its status.
async fn dig_at(port: u16, args: &[&str]) -> String {
    let mut cmd = Command::new("dig");
    cmd.args(["@127.0.0.1", "-p", &port.to_string()]).args(args);
    run(cmd).await
}

async fn run(mut cmd: Command) -> String {
    cmd.kill_on_drop(true).stdin(Stdio::null());
    let program = format!("{:?}", cmd.as_std());
    match tokio::time::timeout(DIG_DEADLINE, cmd.output()).await {
        Ok(Ok(output)) => String::from_utf8_lossy(&output.stdout).into_owned(),
        Ok(Err(error)) => panic!("cannot run {program}: {error} (install bind9-dnsutils)"),
        Err(_) => panic!("{program} took longer than {DIG_DEADLINE:?}"),
    }
}

/// What dig printed, picked apart.
#[derive(Debug)]
struct Dig {
    text: String,
}

impl Dig {
    fn status(&self) -> &str {
        let at = self.text.find("status: ").expect("a status line") + 8;
        self.text[at..].split(',').next().unwrap()
    }
    fn flags(&self) -> Vec<&str> {
        let line = self
            .text
            .lines()
            .find(|l| l.starts_with(";; flags:"))
            .expect("flags");
        line[9..]
            .split(';')
            .next()
            .unwrap()
            .split_whitespace()
            .collect()
    }
    fn section(&self, title: &str) -> Vec<Vec<&str>> {
        let marker = format!(";; {title} SECTION:");
        let Some(start) = self.text.find(&marker) else {
            return Vec::new();
        };
        self.text[start + marker.len()..]
            .lines()
            .skip(1)
            .take_while(|l| !l.trim().is_empty())
            .map(|l| l.split_whitespace().collect())
            .collect()
    }
    /// The data of each answer record (fields after the type).
    fn answers(&self) -> Vec<String> {
        self.section("ANSWER")
            .iter()
            .map(|f| f[4..].join(" "))
            .collect()
    }
    fn first_ttl(&self) -> u32 {
        self.section("ANSWER")[0][1].parse().unwrap()
    }
}

/// The server in-process with dnsmasq and a silent upstream behind it.
struct Site {
    port: u16,
    counters: Arc<Counters>,
    server: tokio::task::JoinHandle<()>,
    dnsmasq: Option<Peer>,
    _silent: UdpSocket,
    _snapshots: watch::Sender<Option<ConfigSnapshot>>,
    state: TempDir,
    upstream_port: u16,
}

impl Drop for Site {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Site {
    async fn start() -> Site {
        let (dnsmasq, silent, upstream_port) = upstreams().await;
        let state = tempfile::tempdir().unwrap();
        let mut site = Site {
            port: 0,
            counters: Arc::default(),
            server: tokio::spawn(async {}),
            dnsmasq: Some(dnsmasq),
            _silent: silent,
            _snapshots: watch::channel(None).0,
            state,
            upstream_port,
        };
        site.restart_server().await;
        site
    }

    fn cache_file(&self) -> PathBuf {
        self.state.path().join(edgemetal_rack::dns::CACHE_FILE)
    }

    /// (Re)starts the server on a fresh port with the same cache file,
    /// after the previous one has stopped (and saved its cache).
    async fn restart_server(&mut self) {
        self.server.abort();
        let _ = (&mut self.server).await;
        // Forwarders on a port of their own: the port travels with each.
        let forwarders = vec![
            SocketAddr::from(([127, 0, 0, 2], self.upstream_port)),
            SocketAddr::from(([127, 0, 0, 1], self.upstream_port)),
        ];
        let (sender, snapshots) =
            watch::channel(Some(snapshot(dns_config(forwarders, LOOPBACK_ONLY))));
        let counters = Arc::new(Counters::default());
        let server = loop {
            let port = free_port();
            let addr: SocketAddr = ([127, 0, 0, 1], port).into();
            let config = server_config();
            let bound = DnsServer::bind_with(
                addr,
                addr,
                snapshots.clone(),
                self.cache_file(),
                config,
                counters.clone(),
            )
            .await;
            if let Ok(server) = bound {
                break server;
            }
        };
        self.port = server.local_udp_addr().unwrap().port();
        self.counters = counters;
        self._snapshots = sender;
        self.server = tokio::spawn(async move {
            server.run().await.unwrap();
        });
    }

    async fn dig(&self, args: &[&str]) -> Dig {
        Dig {
            text: dig_at(self.port, args).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn zone_names_get_authoritative_answers_ptr_and_nxdomain_with_soa() {
    let site = Site::start().await;
    let host = site.dig(&["host1.site.test", "A"]).await;
    assert_eq!(host.status(), "NOERROR", "{host:?}");
    assert!(host.flags().contains(&"aa"), "{host:?}");
    assert_eq!(host.answers(), ["10.77.0.11"]);

    let ptr = site.dig(&["-x", "10.77.0.11"]).await;
    assert!(ptr.flags().contains(&"aa"), "{ptr:?}");
    assert_eq!(ptr.answers(), ["host1.site.test."]);

    let missing = site.dig(&["nope.site.test", "A"]).await;
    assert_eq!(missing.status(), "NXDOMAIN", "{missing:?}");
    assert!(missing.flags().contains(&"aa"));
    let authority = missing.section("AUTHORITY");
    assert_eq!(authority[0][0], "site.test.");
    assert_eq!(authority[0][3], "SOA");
    assert_eq!(authority[0][4], "ns.site.test.");
    assert_eq!(authority[0][6], "2024", "the zone's serial: {missing:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn several_addresses_come_back_in_a_rotating_order() {
    let site = Site::start().await;
    let mut orders = Vec::new();
    for _ in 0..4 {
        orders.push(site.dig(&["pool.site.test", "A"]).await.answers());
    }
    for pair in orders.windows(2) {
        assert_ne!(pair[0], pair[1], "the order changes between queries");
    }
    for order in &mut orders {
        order.sort();
        assert_eq!(
            order,
            &["10.77.0.21", "10.77.0.22", "10.77.0.23", "10.77.0.24"]
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_large_answer_is_truncated_over_udp_and_dig_gets_it_over_tcp() {
    let site = Site::start().await;
    let big = site.dig(&["big.site.test", "TXT"]).await;
    assert!(
        big.text.contains("Truncated, retrying in TCP mode"),
        "{big:?}"
    );
    assert_eq!(big.status(), "NOERROR");
    let strings = big.answers()[0].matches('"').count() / 2;
    assert_eq!(strings, 8, "{big:?}");
    assert!(site.counters.truncated() >= 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn forwarded_names_fail_over_resolve_via_dnsmasq_and_stay_cached() {
    let mut site = Site::start().await;
    let first = site.dig(&[FORWARDED, "A"]).await;
    assert_eq!(first.status(), "NOERROR", "{first:?}");
    assert!(!first.flags().contains(&"aa") && first.flags().contains(&"ra"));
    assert_eq!(first.answers(), [FORWARDED_ADDRESS]);
    assert!(
        site.counters.upstream(UpstreamEvent::Timeout) >= 1,
        "the silent one was tried"
    );

    // A large upstream answer: dnsmasq truncates over UDP, the server asks
    // again over TCP, dig too.
    let big = site.dig(&["bigtxt.upstream.test", "TXT"]).await;
    assert_eq!(big.answers()[0].matches('"').count() / 2, 8, "{big:?}");
    assert!(site.counters.upstream(UpstreamEvent::TcpRetry) >= 1);

    // With dnsmasq gone, the cache answers, its TTL going down.
    drop(site.dnsmasq.take());
    let ttl = first.first_ttl();
    let mut later = site.dig(&[FORWARDED, "A"]).await;
    for _ in 0..50 {
        if later.first_ttl() < ttl {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        later = site.dig(&[FORWARDED, "A"]).await;
    }
    assert_eq!(later.answers(), [FORWARDED_ADDRESS]);
    assert!(later.first_ttl() < ttl, "{ttl} then {later:?}");
    assert!(site.counters.queries(Outcome::Cached) >= 1);

    // And across a restart: the cache was saved when the server stopped.
    site.restart_server().await;
    let restored = site.dig(&[FORWARDED, "A"]).await;
    assert_eq!(restored.answers(), [FORWARDED_ADDRESS], "{restored:?}");
    assert!(restored.first_ttl() <= later.first_ttl());
    assert_eq!(site.counters.queries(Outcome::Cached), 1);
}

mod netns {
    //! Two namespaces joined by a veth pair, deleted on drop (after the
    //! pattern of tests/src/netns.rs).
    use std::process::Command;

    pub struct Pair {
        pub server: String,
        pub client: String,
    }

    fn ip(args: &[&str]) {
        let output = Command::new("ip").args(args).output().expect("run ip");
        assert!(
            output.status.success(),
            "ip {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    impl Pair {
        /// Server end 10.99.0.1/24, client end 10.99.0.2/24; names unique
        /// to this process, so parallel runs do not collide.
        pub fn create() -> Pair {
            let id = std::process::id() % 100_000;
            let pair = Pair {
                server: format!("emdsrv{id}"),
                client: format!("emdcli{id}"),
            };
            ip(&["netns", "add", &pair.server]);
            ip(&["netns", "add", &pair.client]);
            let (a, b) = (format!("emdva{id}"), format!("emdvb{id}"));
            // Created inside the namespaces: nothing is left in the host's
            // namespace should a later step fail.
            ip(&[
                "link",
                "add",
                &a,
                "netns",
                &pair.server,
                "type",
                "veth",
                "peer",
                "name",
                &b,
                "netns",
                &pair.client,
            ]);
            for (ns, dev, address) in [
                (&pair.server, &a, "10.99.0.1/24"),
                (&pair.client, &b, "10.99.0.2/24"),
            ] {
                ip(&["-n", ns, "addr", "add", address, "dev", dev]);
                ip(&["-n", ns, "link", "set", dev, "up"]);
                ip(&["-n", ns, "link", "set", "lo", "up"]);
            }
            pair
        }
    }

    impl Drop for Pair {
        fn drop(&mut self) {
            // Deleting a namespace deletes the veth end inside it.
            for ns in [&self.server, &self.client] {
                let _ = Command::new("ip").args(["netns", "del", ns]).output();
            }
        }
    }

    /// Moves the calling thread into namespace `name`.
    pub fn enter(name: &str) {
        use std::os::fd::AsRawFd;
        let file =
            std::fs::File::open(format!("/var/run/netns/{name}")).expect("open the namespace");
        // SAFETY: setns on a valid namespace fd changes only this thread.
        let entered = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(entered, 0, "setns: {}", std::io::Error::last_os_error());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn clients_outside_the_allowed_networks_get_zones_but_no_recursion() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: network namespaces need root");
        return;
    }
    let pair = netns::Pair::create();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server_ns = pair.server.clone();
    // The server runs on a thread inside its namespace, on a runtime of
    // its own: every socket it opens (upstream ones too) lives there.
    let thread = std::thread::spawn(move || {
        netns::enter(&server_ns);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let state = tempfile::tempdir().unwrap();
            let forwarders = vec!["127.0.0.1:54".parse().unwrap()];
            let (_keep, snapshots) =
                watch::channel(Some(snapshot(dns_config(forwarders, LOOPBACK_ONLY))));
            let addr: SocketAddr = "0.0.0.0:53".parse().unwrap();
            let server = DnsServer::bind_with(
                addr,
                addr,
                snapshots,
                state.path().join("c"),
                server_config(),
                Arc::default(),
            )
            .await
            .unwrap();
            tokio::select! {
                result = server.run() => result.unwrap(),
                _ = stopped => {}
            }
        });
    });
    let dig_in = |ns: &str, target: &str, name: &str| {
        let mut cmd = Command::new("ip");
        cmd.args([
            "netns",
            "exec",
            ns,
            "dig",
            &format!("@{target}"),
            name,
            "A",
            "+time=2",
            "+tries=1",
        ]);
        cmd
    };
    let mut ready = false;
    for _ in 0..100 {
        let text = run(dig_in(&pair.client, "10.99.0.1", "host1.site.test")).await;
        if text.contains("status: NOERROR") {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "the server in the namespace did not answer");
    let zone = Dig {
        text: run(dig_in(&pair.client, "10.99.0.1", "host1.site.test")).await,
    };
    assert!(
        zone.flags().contains(&"aa") && !zone.flags().contains(&"ra"),
        "{zone:?}"
    );
    assert_eq!(zone.answers(), ["10.77.0.11"]);
    let outside = Dig {
        text: run(dig_in(&pair.client, "10.99.0.1", FORWARDED)).await,
    };
    assert_eq!(outside.status(), "REFUSED", "{outside:?}");
    // Loopback may recurse: its query is forwarded (and fails: nothing
    // listens on the upstream port in that namespace), not refused.
    let local = Dig {
        text: run(dig_in(&pair.server, "127.0.0.1", FORWARDED)).await,
    };
    assert_eq!(local.status(), "SERVFAIL", "{local:?}");
    let _ = stop.send(());
    thread.join().unwrap();
}
