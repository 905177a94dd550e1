//! The proxy on loopback against a scripted upstream (raw HTTP/1.1 over
//! TCP, so it can misbehave): one download for concurrent requests, ranges
//! and conditionals from the cache, revalidation of indexes, a truncated
//! download never cached, and the WAN down.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::{Counters, Proxy};

/// What the upstream answers: (status line and headers, body, how many
/// body bytes to really send before closing).
type Script = Arc<dyn Fn(&str, &str) -> (String, Vec<u8>, Option<usize>) + Send + Sync>;

/// A one-request-per-connection upstream that logs request heads.
struct Upstream {
    address: SocketAddr,
    requests: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Upstream {
    async fn start(script: Script) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let log = requests.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let (script, log) = (script.clone(), log.clone());
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    while !head.ends_with(b"\r\n\r\n") {
                        match stream.read_u8().await {
                            Ok(byte) => head.push(byte),
                            Err(_) => return,
                        }
                    }
                    let head = String::from_utf8_lossy(&head).into_owned();
                    let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
                    log.lock().unwrap().push(head.clone());
                    // Slow enough that concurrent requests overlap with it.
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    let (status, body, cut) = script(&path, &head);
                    let mut out = status.into_bytes();
                    out.extend_from_slice(&body[..cut.unwrap_or(body.len())]);
                    let _ = stream.write_all(&out).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        Upstream {
            address,
            requests,
            task,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    fn count(&self, path: &str) -> usize {
        let needle = format!("GET {path} ");
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|h| h.contains(&needle))
            .count()
    }

    fn last(&self, path: &str) -> String {
        let needle = format!("GET {path} ");
        self.requests
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find(|h| h.contains(&needle))
            .cloned()
            .unwrap_or_default()
    }
}

fn ok(body: &[u8], extra: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n",
        body.len()
    )
}

async fn proxy(dir: &std::path::Path) -> (SocketAddr, Counters) {
    let counters = Counters::default();
    let (_tx, rx) = tokio::sync::watch::channel(None);
    // The sender may go: the proxy keeps the settings it started with.
    let server = Proxy::bind("127.0.0.1:0".parse().unwrap(), dir, rx, counters.clone())
        .await
        .unwrap();
    let address = server.local_addr().unwrap();
    tokio::spawn(server.run());
    (address, counters)
}

fn client(proxy: SocketAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .proxy(reqwest::Proxy::http(format!("http://{proxy}")).unwrap())
        .build()
        .unwrap()
}

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

#[tokio::test]
async fn concurrent_requests_make_one_download_and_ranges_come_from_the_cache() {
    let body = Arc::new(payload(300_000));
    let served = body.clone();
    let upstream = Upstream::start(Arc::new(move |_, _| {
        (ok(&served, ""), served.to_vec(), None)
    }))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (address, counters) = proxy(dir.path()).await;
    let http = client(address);
    let url = upstream.url("/pool/p_1_all.deb");
    let fetches = (0..8).map(|_| {
        let (http, url) = (http.clone(), url.clone());
        tokio::spawn(async move { http.get(url).send().await.unwrap().bytes().await.unwrap() })
    });
    for fetch in fetches {
        assert!(fetch.await.unwrap()[..] == body[..]);
    }
    assert_eq!(upstream.count("/pool/p_1_all.deb"), 1);
    assert_eq!(counters.bytes_from_upstream.get(), body.len() as u64);

    let response = http
        .get(&url)
        .header("range", "bytes=1000-1999")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 206);
    assert_eq!(
        response.headers()["content-range"],
        format!("bytes 1000-1999/{}", body.len()).as_str()
    );
    assert!(response.bytes().await.unwrap()[..] == body[1000..2000]);
    let response = http
        .get(&url)
        .header("range", "bytes=999999-")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 416);
    assert_eq!(
        upstream.count("/pool/p_1_all.deb"),
        1,
        "immutable: never revalidated"
    );
    assert!(counters.hits.get() >= 2);
    upstream.task.abort();
}

#[tokio::test]
async fn indexes_are_revalidated_and_served_stale_with_a_warning_when_upstream_is_gone() {
    let version = Arc::new(AtomicUsize::new(1));
    let current = version.clone();
    let upstream = Upstream::start(Arc::new(move |_, head| {
        let v = current.load(Ordering::SeqCst);
        let etag = format!("\"v{v}\"");
        if head
            .to_ascii_lowercase()
            .contains(&format!("if-none-match: {etag}").to_ascii_lowercase())
        {
            let status =
                format!("HTTP/1.1 304 Not Modified\r\nETag: {etag}\r\nConnection: close\r\n\r\n");
            return (status, Vec::new(), None);
        }
        let body = format!("Package: hello\nVersion: {v}\n").into_bytes();
        (ok(&body, &format!("ETag: {etag}\r\n")), body, None)
    }))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (address, counters) = proxy(dir.path()).await;
    let http = client(address);
    let url = upstream.url("/dists/x/main/binary-amd64/Packages");
    let get = || async { http.get(&url).send().await.unwrap() };
    assert_eq!(
        get().await.text().await.unwrap(),
        "Package: hello\nVersion: 1\n"
    );
    let again = get().await;
    assert_eq!(again.headers()["x-cache"], "HIT");
    assert_eq!(again.text().await.unwrap(), "Package: hello\nVersion: 1\n");
    assert!(upstream
        .last("/dists/x/main/binary-amd64/Packages")
        .contains("\"v1\""));
    version.store(2, Ordering::SeqCst);
    assert_eq!(
        get().await.text().await.unwrap(),
        "Package: hello\nVersion: 2\n"
    );
    assert_eq!(upstream.count("/dists/x/main/binary-amd64/Packages"), 3);

    // A client's own conditional is answered by the proxy.
    let response = http
        .get(&url)
        .header("if-none-match", "\"v2\"")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 304);

    // The WAN goes down.
    upstream.task.abort();
    while tokio::net::TcpStream::connect(upstream.address)
        .await
        .is_ok()
    {
        tokio::task::yield_now().await;
    }
    let stale = get().await;
    assert_eq!(stale.status(), 200);
    assert!(stale.headers()["warning"]
        .to_str()
        .unwrap()
        .starts_with("111"));
    assert_eq!(stale.text().await.unwrap(), "Package: hello\nVersion: 2\n");
    let missing = http
        .get(upstream.url("/pool/never_1_all.deb"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 502);
    let revalidations = |outcome: &'static str| {
        counters
            .revalidations
            .get_or_create(&vec![("outcome", outcome)])
            .get()
    };
    assert_eq!(
        (
            revalidations("not_modified"),
            revalidations("modified"),
            revalidations("failed")
        ),
        // The client's conditional was answered after a revalidation too.
        (2, 1, 1)
    );
}

#[tokio::test]
async fn a_truncated_download_is_never_cached_and_the_cache_survives_a_restart() {
    let body = Arc::new(payload(100_000));
    let served = body.clone();
    let cut = Arc::new(AtomicUsize::new(1));
    let cutting = cut.clone();
    let upstream = Upstream::start(Arc::new(move |_, _| {
        // The first answer stops halfway through its announced length.
        let short = (cutting.fetch_sub(1, Ordering::SeqCst) == 1).then_some(50_000);
        (ok(&served, ""), served.to_vec(), short)
    }))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (address, _) = proxy(dir.path()).await;
    let http = client(address);
    let url = upstream.url("/pool/t_1_all.deb");
    let broken = http.get(&url).send().await.unwrap().bytes().await;
    assert!(
        broken.is_err(),
        "a short body is an error for the client too"
    );
    let whole = http.get(&url).send().await.unwrap();
    assert_eq!(whole.headers()["x-cache"], "MISS");
    assert!(whole.bytes().await.unwrap()[..] == body[..]);
    assert_eq!(upstream.count("/pool/t_1_all.deb"), 2);

    // Another proxy on the same cache directory (a restart), upstream gone.
    upstream.task.abort();
    let (address, counters) = proxy(dir.path()).await;
    let cached = client(address).get(&url).send().await.unwrap();
    assert_eq!(cached.headers()["x-cache"], "HIT");
    assert!(cached.bytes().await.unwrap()[..] == body[..]);
    assert_eq!(counters.bytes_from_cache.get(), body.len() as u64);
}

#[tokio::test]
async fn other_methods_and_connect_ports_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (address, counters) = proxy(dir.path()).await;
    let http = client(address);
    let response = http.post("http://127.0.0.1:9/x").send().await.unwrap();
    assert_eq!(response.status(), 405);
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream
        .write_all(b"CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22\r\n\r\n")
        .await
        .unwrap();
    let mut answer = vec![0; 12];
    stream.read_exact(&mut answer).await.unwrap();
    assert_eq!(&answer, b"HTTP/1.1 403");
    let direct = reqwest::get(format!("http://{address}/not-absolute"))
        .await
        .unwrap();
    assert_eq!(direct.status(), 400);
    let refused = |reason: &'static str| {
        counters
            .refused
            .get_or_create(&vec![("reason", reason)])
            .get()
    };
    assert_eq!(
        (refused("method"), refused("port"), refused("request")),
        (1, 1, 1)
    );
}

#[tokio::test]
async fn a_parent_proxy_carries_downloads_and_tunnels() {
    let body = Arc::new(payload(10_000));
    let served = body.clone();
    let upstream = Upstream::start(Arc::new(move |_, _| {
        (ok(&served, ""), served.to_vec(), None)
    }))
    .await;
    let (parent_dir, child_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let port = upstream.address.port();
    let (parent, parent_counters) = chained(parent_dir.path(), None, port).await;
    let (child, _) = chained(child_dir.path(), Some(format!("http://{parent}")), port).await;

    let url = upstream.url("/pool/via_1_all.deb");
    let fetched = client(child).get(&url).send().await.unwrap();
    assert!(fetched.bytes().await.unwrap()[..] == body[..]);
    assert_eq!(
        parent_counters.misses.get(),
        1,
        "the download went through the parent"
    );
    assert_eq!(upstream.count("/pool/via_1_all.deb"), 1);

    // A tunnel through both proxies to the upstream's (allowed) port.
    let mut stream = tokio::net::TcpStream::connect(child).await.unwrap();
    let target = upstream.address;
    stream
        .write_all(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(stream.read_u8().await.unwrap());
    }
    assert!(
        head.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    stream
        .write_all(format!("GET /tunnelled HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    assert!(answer.starts_with(b"HTTP/1.1 200"));
    assert_eq!(upstream.count("/tunnelled"), 1);
}

/// A proxy allowing CONNECT to `port`, through `parent` if given.
async fn chained(
    dir: &std::path::Path,
    parent: Option<String>,
    port: u16,
) -> (SocketAddr, Counters) {
    let counters = Counters::default();
    let (_tx, rx) = tokio::sync::watch::channel(None);
    let server = Proxy::bind("127.0.0.1:0".parse().unwrap(), dir, rx, counters.clone())
        .await
        .unwrap();
    server.proxy().apply(super::Settings {
        clients: Vec::new(),
        connect_ports: vec![port],
        parent,
        cache_bytes: 1 << 30,
    });
    let address = server.local_addr().unwrap();
    tokio::spawn(server.run());
    (address, counters)
}
