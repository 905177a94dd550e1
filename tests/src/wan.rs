//! A WAN between a rack and its broker, for tests: a TCP proxy on loopback
//! that delays each direction by a fixed time (a delay line: bytes keep
//! flowing at full rate, each arriving `one_way` after it was sent). It can
//! be cut (every live connection is dropped, new ones are refused), or
//! black-holed (bytes vanish and nobody is told, as when a WAN dies
//! upstream: the ends notice only by their keep-alives), and restored. The
//! kernel here has no netem; this is its stand-in.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// A running impairment proxy; stops when dropped.
pub struct Wan {
    address: SocketAddr,
    /// `Some(epoch)` while up; `None` while cut. Connections die when it changes.
    link: watch::Sender<Option<u64>>,
    delay: Arc<Mutex<Duration>>,
    blackholed: Arc<std::sync::atomic::AtomicBool>,
    cuts: AtomicU64,
    refused: Arc<AtomicU64>,
    accepted: Arc<AtomicU64>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Wan {
    /// A proxy to `upstream` adding `one_way` in each direction (RTT = 2 × one_way).
    ///
    /// It runs on a thread and runtime of its own: tests block their own
    /// runtime in curl and friends, and the WAN must keep moving meanwhile.
    pub async fn start(upstream: SocketAddr, one_way: Duration) -> Wan {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let address = listener.local_addr().unwrap();
        let (link, _) = watch::channel(Some(0));
        let delay = Arc::new(Mutex::new(one_way));
        let refused = Arc::new(AtomicU64::new(0));
        let accepted = Arc::new(AtomicU64::new(0));
        let blackholed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let proxy = accept_loop(
            listener,
            upstream,
            link.clone(),
            Impairment {
                delay: delay.clone(),
                blackholed: blackholed.clone(),
            },
            refused.clone(),
            accepted.clone(),
        );
        std::thread::Builder::new()
            .name("wan".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(async move {
                    tokio::select! {
                        _ = proxy => {}
                        _ = stopped => {}
                    }
                });
            })
            .unwrap();
        Wan {
            address,
            link,
            delay,
            blackholed,
            cuts: AtomicU64::new(0),
            refused,
            accepted,
            stop: Some(stop),
        }
    }

    /// Where clients connect instead of the upstream.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Cuts the link: live connections drop, new ones are refused.
    pub fn cut(&self) {
        self.cuts.fetch_add(1, Ordering::Relaxed);
        self.link.send_replace(None);
    }

    /// Black-holes the link: bytes vanish both ways, connections stay open
    /// and new ones hang, and nobody is told.
    pub fn blackhole(&self) {
        self.blackholed.store(true, Ordering::SeqCst);
    }

    /// Restores the link after a cut or black hole; connections that lived
    /// through a black hole (their streams now have holes) are dropped.
    pub fn restore(&self) {
        let epoch = self.cuts.fetch_add(1, Ordering::Relaxed) + 1;
        self.blackholed.store(false, Ordering::SeqCst);
        self.link.send_replace(Some(epoch));
    }

    /// Changes the one-way delay for bytes sent from now on.
    pub fn set_delay(&self, one_way: Duration) {
        *self.delay.lock().unwrap() = one_way;
    }

    /// Connections refused while cut, and accepted in all.
    pub fn connections(&self) -> (u64, u64) {
        (
            self.refused.load(Ordering::Relaxed),
            self.accepted.load(Ordering::Relaxed),
        )
    }
}

impl Drop for Wan {
    fn drop(&mut self) {
        self.link.send_replace(None);
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// What the proxy does to the bytes it carries.
#[derive(Clone)]
struct Impairment {
    delay: Arc<Mutex<Duration>>,
    blackholed: Arc<std::sync::atomic::AtomicBool>,
}

async fn accept_loop(
    listener: std::net::TcpListener,
    upstream: SocketAddr,
    link: watch::Sender<Option<u64>>,
    impairment: Impairment,
    refused: Arc<AtomicU64>,
    accepted: Arc<AtomicU64>,
) {
    let Ok(listener) = TcpListener::from_std(listener) else {
        return;
    };
    loop {
        let Ok((client, _)) = listener.accept().await else {
            return;
        };
        let Some(epoch) = *link.borrow() else {
            // A refusal: the peer's connection is closed at once.
            refused.fetch_add(1, Ordering::Relaxed);
            drop(client);
            continue;
        };
        accepted.fetch_add(1, Ordering::Relaxed);
        let mut cut = link.subscribe();
        let impairment = impairment.clone();
        tokio::spawn(async move {
            if impairment.blackholed.load(Ordering::SeqCst) {
                // The SYN got through to nobody: hold the client until restored.
                let _ = cut.wait_for(|now| *now != Some(epoch)).await;
                drop(client);
                return;
            }
            let Ok(server) = TcpStream::connect(upstream).await else {
                return;
            };
            let _ = (client.set_nodelay(true), server.set_nodelay(true));
            let (client_read, client_write) = client.into_split();
            let (server_read, server_write) = server.into_split();
            let up = tokio::spawn(delay_line(client_read, server_write, impairment.clone()));
            let down = tokio::spawn(delay_line(server_read, client_write, impairment));
            // Until the link is cut (or its epoch changes), or a side closes.
            let _ = cut.wait_for(|now| *now != Some(epoch)).await;
            up.abort();
            down.abort();
        });
    }
}

/// Copies `from` to `to`, each chunk written `delay` after it was read.
/// Reader and writer run in this one task, so aborting it (a cut) loses
/// what was in flight, as a real cut does.
async fn delay_line(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    impairment: Impairment,
) {
    let Impairment { delay, blackholed } = impairment;
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let reader = async move {
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let due = Instant::now() + *delay.lock().unwrap();
                    if tx.send((due, buffer[..n].to_vec())).is_err() {
                        break;
                    }
                }
            }
        }
    };
    let writer = async move {
        while let Some((due, bytes)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if blackholed.load(Ordering::SeqCst) {
                continue;
            }
            if to.write_all(&bytes).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}
