//! Response bodies: small fixed texts, and byte ranges of a file, either
//! complete (a cached object) or still growing (a download other requests
//! stream from).

use std::io;
use std::os::unix::fs::FileExt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::BoxBody;
use http_body_util::BodyExt;
use prometheus_client::metrics::counter::Counter;
use tokio::sync::{mpsc, watch};

use super::fetch::State;

/// The body of every response the proxy sends.
pub type ProxyBody = BoxBody<Bytes, io::Error>;

/// Bytes read from disk per chunk sent.
const CHUNK: u64 = 256 * 1024;

/// A fixed body.
pub fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    http_body_util::Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// No body.
pub fn empty() -> ProxyBody {
    http_body_util::Empty::new()
        .map_err(|never| match never {})
        .boxed()
}

/// Bytes `start..end` of `file`, counted in `sent`. With `growing`, the
/// file is a download in progress: reading waits for bytes to arrive, and
/// stops at the download's end (so `end` may be `u64::MAX` for an unknown
/// length); a broken-off download ends the body with an error, which cuts
/// the client's connection rather than passing a short body as complete.
pub fn file_range(
    file: Arc<std::fs::File>,
    start: u64,
    end: u64,
    growing: Option<watch::Receiver<State>>,
    sent: Option<Counter>,
) -> ProxyBody {
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        let mut growing = growing;
        let mut position = start;
        while position < end {
            let available = match &mut growing {
                None => end,
                Some(state) => match available(state, position).await {
                    Ok(Some(available)) => available.min(end),
                    Ok(None) => return,
                    Err(error) => {
                        let _ = tx.send(Err(error)).await;
                        return;
                    }
                },
            };
            let length = (available - position).min(CHUNK);
            let reader = file.clone();
            let read = tokio::task::spawn_blocking(move || {
                let mut buffer = vec![0; length as usize];
                reader.read_exact_at(&mut buffer, position).map(|()| buffer)
            })
            .await
            .unwrap_or_else(|error| Err(io::Error::other(error)));
            let chunk = match read {
                Ok(chunk) => chunk,
                Err(error) => {
                    let _ = tx.send(Err(error)).await;
                    return;
                }
            };
            if tx.send(Ok(Bytes::from(chunk))).await.is_err() {
                return; // The client went away.
            }
            if let Some(sent) = &sent {
                sent.inc_by(length);
            }
            position += length;
        }
    });
    let hint = (end != u64::MAX).then(|| end.saturating_sub(start));
    ChannelBody { rx, hint }.boxed()
}

/// How many bytes of a growing download exist beyond `position`: waits
/// until there is at least one; `None` at a complete download's end.
async fn available(state: &mut watch::Receiver<State>, position: u64) -> io::Result<Option<u64>> {
    loop {
        if let State::Body(_, progress) = &*state.borrow_and_update() {
            if progress.written > position {
                return Ok(Some(progress.written));
            }
            match progress.done {
                Some(true) => return Ok(None),
                Some(false) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the upstream download broke off",
                    ))
                }
                None => {}
            }
        }
        if state.changed().await.is_err() {
            // The download task is gone; its last state was seen above.
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the upstream download stopped",
            ));
        }
    }
}

/// A body fed by a task through a channel.
struct ChannelBody {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    hint: Option<u64>,
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        self.rx
            .poll_recv(cx)
            .map(|item| item.map(|chunk| chunk.map(Frame::data)))
    }

    fn size_hint(&self) -> SizeHint {
        match self.hint {
            Some(exact) => SizeHint::with_exact(exact),
            None => SizeHint::default(),
        }
    }
}
