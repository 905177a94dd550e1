//! The rack's TFTP server against real clients: tftp-hpa, atftp and curl
//! fetch files of several sizes byte-exact, with and without options, and
//! are refused escapes, symlinks out of the root and writes.
//!
//! The server runs in-process on 127.0.0.1 with a free port; each client is
//! a subprocess with a deadline, so a hang fails the test instead of
//! blocking it. The clients come from Debian packages (tftp-hpa, atftp,
//! curl), which scripts/test.sh installs.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use edgemetal_rack::tftp::{Counters, DirSource, ErrorKind, TftpConfig, TftpServer};
use tempfile::TempDir;
use tokio::process::Command;

/// Longest a single client run may take (the rollover fetch is ≈ 2-3 s).
const CLIENT_DEADLINE: Duration = Duration::from_secs(60);

/// Files served, by name: small, an exact multiple of 512 (ends with an
/// empty block), larger than blksize 1468 × windowsize 16, and one in a
/// subdirectory.
/// Seven windows of 1468 × 16 and a bit.
const BIG_LEN: usize = 1468 * 16 * 7 + 123;

const FILES: [(&str, usize); 5] = [
    ("small.txt", 100),
    ("exact.bin", 512 * 40),
    ("big.bin", BIG_LEN),
    ("empty", 0),
    ("pxelinux.cfg/01-52-54-00-12-34-56", 300),
];

struct Fixture {
    root: TempDir,
    _outside: TempDir,
    work: TempDir,
    addr: SocketAddr,
    counters: Arc<Counters>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn content(name: &str, len: usize) -> Vec<u8> {
    let seed = name.bytes().map(usize::from).sum::<usize>();
    (0..len)
        .map(|i| ((i * 31 + seed) ^ (i >> 9)) as u8)
        .collect()
}

async fn start(config: TftpConfig) -> Fixture {
    let root = tempfile::tempdir().unwrap();
    for (name, len) in FILES {
        let path = root.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content(name, len)).unwrap();
    }
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret"), b"not for tftp").unwrap();
    std::os::unix::fs::symlink(outside.path().join("secret"), root.path().join("leak")).unwrap();
    let source = DirSource::new(root.path()).unwrap();
    let server = TftpServer::bind("127.0.0.1:0".parse().unwrap(), Arc::new(source), config)
        .await
        .unwrap();
    let addr = server.local_addr();
    let counters = server.counters();
    let server = tokio::spawn(async move {
        server.run().await.unwrap();
    });
    Fixture {
        root,
        _outside: outside,
        work: tempfile::tempdir().unwrap(),
        addr,
        counters,
        server,
    }
}

impl Fixture {
    fn local(&self, name: &str) -> PathBuf {
        self.work.path().join(name.replace('/', "_"))
    }

    fn port(&self) -> String {
        self.addr.port().to_string()
    }

    async fn tftp_hpa(&self, command: &str) -> Output {
        let mut cmd = Command::new("tftp");
        cmd.current_dir(self.work.path())
            .args(["-m", "binary", "127.0.0.1", &self.port(), "-c"])
            .args(command.split(' '));
        run(cmd).await
    }

    async fn atftp_get(&self, remote: &str, local: &Path, options: &[&str]) -> Output {
        let mut cmd = Command::new("atftp");
        for option in options {
            cmd.args(["--option", option]);
        }
        cmd.args(["-g", "-r", remote, "-l"])
            .arg(local)
            .args(["127.0.0.1", &self.port()]);
        run(cmd).await
    }

    fn curl_command(&self, url_path: &str, local: &Path, extra: &[&str]) -> Command {
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "--max-time", "30", "-o"])
            .arg(local)
            .args(extra)
            .arg(format!("tftp://127.0.0.1:{}/{url_path}", self.port()));
        cmd
    }

    async fn curl(&self, url_path: &str, local: &Path, extra: &[&str]) -> Output {
        run(self.curl_command(url_path, local, extra)).await
    }
}

/// Runs a client with a deadline; its output is returned whatever its
/// exit status (tftp-hpa exits 0 even on a TFTP error).
async fn run(mut cmd: Command) -> Output {
    cmd.kill_on_drop(true).stdin(std::process::Stdio::null());
    let program = format!("{:?}", cmd.as_std());
    let child = cmd.output();
    match tokio::time::timeout(CLIENT_DEADLINE, child).await {
        Ok(Ok(output)) => output,
        Ok(Err(error)) => panic!(
            "cannot run {program}: {error} (install tftp-hpa, atftp and curl; scripts/test.sh does)"
        ),
        Err(_) => panic!("{program} hung for {CLIENT_DEADLINE:?}"),
    }
}

/// Waits up to 5 s for `condition`, for counters updated just after a
/// client has exited.
async fn eventually(condition: impl Fn() -> bool) {
    for _ in 0..500 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition not reached within 5 s");
}

fn text(output: &Output) -> String {
    format!(
        "status {}\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn assert_same(local: &Path, name: &str, len: usize, output: &Output) {
    let got = std::fs::read(local).unwrap_or_else(|e| panic!("{name}: {e}\n{}", text(output)));
    assert_eq!(got.len(), len, "{name} length\n{}", text(output));
    assert!(
        got == content(name, len),
        "{name} differs\n{}",
        text(output)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tftp_hpa_fetches_every_file_byte_exact() {
    let fx = start(TftpConfig::default()).await;
    for (name, len) in FILES {
        let local = fx.local(name);
        let output = fx
            .tftp_hpa(&format!("get {name} {}", local.display()))
            .await;
        assert_same(&local, name, len, &output);
    }
    // The client exits on sending its last ACK; the server counts the
    // transfer when that ACK arrives, a moment later.
    eventually(|| fx.counters.served() == FILES.len() as u64).await;
    eventually(|| fx.counters.active() == 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tftp_hpa_fetches_a_file_past_the_block_number_rollover() {
    let fx = start(TftpConfig::default()).await;
    // 65,536 blocks of 512 bytes and some: block numbers wrap past 65535.
    let name = "rollover.bin";
    let len = 65_536 * 512 + 1000;
    std::fs::write(fx.root.path().join(name), content(name, len)).unwrap();
    let local = fx.local(name);
    let output = fx
        .tftp_hpa(&format!("get {name} {}", local.display()))
        .await;
    assert_same(&local, name, len, &output);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn atftp_negotiates_blksize_windowsize_and_tsize() {
    let fx = start(TftpConfig::default()).await;
    let options = ["blksize 1468", "windowsize 16", "tsize enable"];
    for (name, len) in FILES {
        let local = fx.local(name);
        let output = fx.atftp_get(name, &local, &options).await;
        assert_same(&local, name, len, &output);
    }
    // The OACK really granted the window: atftp's trace shows it.
    let mut cmd = Command::new("atftp");
    cmd.arg("--trace");
    for option in options {
        cmd.args(["--option", option]);
    }
    let local = fx.local("traced");
    cmd.args(["-g", "-r", "big.bin", "-l"])
        .arg(&local)
        .args(["127.0.0.1", &fx.port()]);
    let output = run(cmd).await;
    let trace = text(&output);
    let oack = trace
        .lines()
        .find(|line| line.contains("received OACK"))
        .unwrap_or_else(|| panic!("no OACK\n{trace}"));
    let tsize = format!("tsize: {}", BIG_LEN);
    for granted in ["windowsize: 16", "blksize: 1468", tsize.as_str()] {
        assert!(oack.contains(granted), "{granted} not in {oack}");
    }
    assert_same(&local, "big.bin", BIG_LEN, &output);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_fetches_with_a_large_blksize_and_concurrently() {
    let fx = start(TftpConfig::default()).await;
    for (name, len) in FILES {
        let local = fx.local(name);
        let output = fx.curl(name, &local, &["--tftp-blksize", "1468"]).await;
        assert_same(&local, name, len, &output);
    }
    // Eight at once, each on its own transfer port: all are started
    // before any is waited for.
    let locals: Vec<PathBuf> = (0..8)
        .map(|i| fx.work.path().join(format!("parallel-{i}")))
        .collect();
    let mut children = Vec::new();
    for local in &locals {
        let mut cmd = fx.curl_command("big.bin", local, &["--tftp-blksize", "1468"]);
        cmd.kill_on_drop(true).stdin(std::process::Stdio::null());
        cmd.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        children.push(cmd.spawn().expect("cannot run curl"));
    }
    for (child, local) in children.into_iter().zip(&locals) {
        let output = tokio::time::timeout(CLIENT_DEADLINE, child.wait_with_output())
            .await
            .expect("curl hung")
            .unwrap();
        assert_same(local, "big.bin", BIG_LEN, &output);
    }
    eventually(|| fx.counters.served() == FILES.len() as u64 + 8).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escapes_symlinks_out_and_writes_are_refused() {
    let fx = start(TftpConfig::default()).await;

    let local = fx.local("passwd");
    let output = fx
        .tftp_hpa(&format!("get ../../etc/passwd {}", local.display()))
        .await;
    assert!(text(&output).contains("Error code 2"), "{}", text(&output));
    assert_eq!(std::fs::read(&local).unwrap_or_default().len(), 0);
    assert_eq!(fx.counters.errors(ErrorKind::PathEscape), 1);

    let output = fx.curl("../../etc/passwd", &local, &["--path-as-is"]).await;
    assert!(!output.status.success(), "{}", text(&output));
    assert_eq!(fx.counters.errors(ErrorKind::PathEscape), 2);

    let local = fx.local("leak");
    let output = fx.tftp_hpa(&format!("get leak {}", local.display())).await;
    assert!(text(&output).contains("Error code 2"), "{}", text(&output));
    assert_eq!(std::fs::read(&local).unwrap_or_default().len(), 0);
    let output = fx.atftp_get("leak", &local, &[]).await;
    assert!(!output.status.success(), "{}", text(&output));
    assert_eq!(fx.counters.errors(ErrorKind::SymlinkEscape), 2);

    let output = fx.tftp_hpa("get no-such-file nothing").await;
    assert!(text(&output).contains("Error code 1"), "{}", text(&output));
    assert_eq!(fx.counters.errors(ErrorKind::NotFound), 1);

    let upload = fx.work.path().join("upload");
    std::fs::write(&upload, b"data").unwrap();
    let output = fx
        .tftp_hpa(&format!("put {} uploaded", upload.display()))
        .await;
    assert!(text(&output).contains("Error code 2"), "{}", text(&output));
    assert!(!fx.root.path().join("uploaded").exists());
    assert_eq!(fx.counters.errors(ErrorKind::WriteRefused), 1);
    assert_eq!(fx.counters.served(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_beyond_the_transfer_limit_gets_a_clear_busy_error() {
    let fx = start(TftpConfig {
        max_transfers: 1,
        ..TftpConfig::default()
    })
    .await;
    // Hold the only slot: a client that asks and then never acknowledges.
    let squatter = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    squatter
        .send_to(b"\x00\x01big.bin\x00octet\x00", fx.addr)
        .await
        .unwrap();
    let mut first = [0u8; 600];
    squatter.recv_from(&mut first).await.unwrap();
    assert_eq!(&first[..4], b"\x00\x03\x00\x01", "DATA block 1");

    // tftp-hpa prints the server's message (curl only its own code).
    let local = fx.local("refused");
    let output = fx
        .tftp_hpa(&format!("get small.txt {}", local.display()))
        .await;
    assert!(
        text(&output).contains("Error code 0: server busy"),
        "{}",
        text(&output)
    );
    let output = fx.curl("small.txt", &local, &[]).await;
    assert!(!output.status.success(), "{}", text(&output));
    assert_eq!(fx.counters.errors(ErrorKind::Busy), 2);
}
