//! Small verified files (a script's size: boot files, small boot
//! resources) kept in memory and answered without touching the disk.
//!
//! tower-http's `ServeFile` opens, stats and reads the file on the blocking
//! pool for every request, which is most of the cost of a 1 KiB answer.
//! Content here is addressed by its sha256 and verified before it is
//! served, so it never changes under a name: a cached copy cannot go stale.
//! Only plain GETs are answered here; Range and conditional requests (and
//! HEAD) still go to `ServeFile`, which handles them as before.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

use axum::body::Body;
use axum::http::{header, HeaderValue, Method, Request};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

/// Files up to this size are kept.
pub const SMALL_FILE_BYTES: u64 = 64 * 1024;
/// At most this much is kept in all (then files are served from disk).
pub const CAPACITY_BYTES: usize = 8 * 1024 * 1024;

/// One kept file.
#[derive(Clone)]
struct Kept {
    body: Bytes,
    last_modified: Option<HeaderValue>,
}

/// The kept files by content hash, and their total size.
type KeptFiles = (HashMap<[u8; 32], Kept>, usize);

/// The kept files, by content hash.
#[derive(Clone, Default)]
pub struct SmallFiles {
    kept: Arc<RwLock<KeptFiles>>,
}

/// Whether `request` is a plain GET of the whole file, which
/// [`SmallFiles::answer`] may answer.
pub fn plain_get(request: &Request<Body>) -> bool {
    let headers = request.headers();
    request.method() == Method::GET
        && [
            header::RANGE,
            header::IF_MODIFIED_SINCE,
            header::IF_UNMODIFIED_SINCE,
            header::IF_MATCH,
            header::IF_NONE_MATCH,
            header::IF_RANGE,
        ]
        .iter()
        .all(|name| !headers.contains_key(name))
}

impl SmallFiles {
    /// The answer to a [`plain_get`] of the verified content `sha256` at
    /// `path`, when it is small; `None` sends it to `ServeFile`.
    pub async fn answer(&self, sha256: &[u8; 32], path: &Path) -> Option<Response> {
        let found = self
            .kept
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .get(sha256)
            .cloned();
        let kept = match found {
            Some(kept) => kept,
            None => self.keep(sha256, path).await?,
        };
        let mut response = (
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/octet-stream"),
                ),
                (header::ACCEPT_RANGES, HeaderValue::from_static("bytes")),
                (header::CONTENT_LENGTH, HeaderValue::from(kept.body.len())),
            ],
            kept.body,
        )
            .into_response();
        if let Some(modified) = kept.last_modified {
            response
                .headers_mut()
                .insert(header::LAST_MODIFIED, modified);
        }
        Some(response)
    }

    /// Reads `path` into memory if it is small and there is room.
    async fn keep(&self, sha256: &[u8; 32], path: &Path) -> Option<Kept> {
        let metadata = tokio::fs::metadata(path).await.ok()?;
        if metadata.len() > SMALL_FILE_BYTES {
            return None;
        }
        let body = Bytes::from(tokio::fs::read(path).await.ok()?);
        let last_modified = metadata
            .modified()
            .ok()
            .and_then(|time| HeaderValue::from_str(&httpdate::fmt_http_date(time)).ok());
        let kept = Kept {
            body,
            last_modified,
        };
        let mut guard = self.kept.write().unwrap_or_else(|e| e.into_inner());
        let (files, bytes) = &mut *guard;
        if *bytes + kept.body.len() <= CAPACITY_BYTES && !files.contains_key(sha256) {
            *bytes += kept.body.len();
            files.insert(*sha256, kept.clone());
        }
        Some(kept)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(headers: &[(header::HeaderName, &str)]) -> Request<Body> {
        let mut request = Request::get("/boot/resources/x");
        for (name, value) in headers {
            request = request.header(name, *value);
        }
        request.body(Body::empty()).unwrap()
    }

    #[test]
    fn only_plain_whole_file_gets_are_answered_from_memory() {
        assert!(plain_get(&get(&[])));
        assert!(!plain_get(&get(&[(header::RANGE, "bytes=0-9")])));
        assert!(!plain_get(&get(&[(header::IF_NONE_MATCH, "\"x\"")])));
        assert!(!plain_get(&get(&[(
            header::IF_MODIFIED_SINCE,
            "Mon, 07 Dec 2026 18:00:00 GMT"
        )])));
        let head = Request::head("/x").body(Body::empty()).unwrap();
        assert!(!plain_get(&head));
    }

    #[tokio::test]
    async fn small_files_are_kept_and_big_ones_left_to_the_disk() {
        let dir = tempfile::tempdir().unwrap();
        let small_path = dir.path().join("small");
        std::fs::write(&small_path, b"#!ipxe\n").unwrap();
        let big_path = dir.path().join("big");
        std::fs::write(&big_path, vec![0u8; SMALL_FILE_BYTES as usize + 1]).unwrap();
        let files = SmallFiles::default();
        let response = files.answer(&[1; 32], &small_path).await.unwrap();
        assert_eq!(response.headers()[header::CONTENT_LENGTH], "7");
        assert!(response.headers().contains_key(header::LAST_MODIFIED));
        // Kept: answered even once the file is gone from the disk.
        std::fs::remove_file(&small_path).unwrap();
        let body = axum::body::to_bytes(
            files
                .answer(&[1; 32], &small_path)
                .await
                .unwrap()
                .into_body(),
            1024,
        )
        .await
        .unwrap();
        assert_eq!(&body[..], b"#!ipxe\n");
        assert!(files.answer(&[2; 32], &big_path).await.is_none());
    }
}
