//! The audit log: who changed (or tried to change) what, from where, with
//! what result. Request bodies are never stored: they may hold secrets.

use std::sync::atomic::{AtomicI64, Ordering};

use serde::Serialize;
use utoipa::ToSchema;

use super::{new_id, now_ms, Store, StoreError};

/// The most entries one page may hold.
pub const MAX_AUDIT_PAGE: u32 = 1000;

/// Paths are client-chosen: keep only this many characters so a request
/// cannot grow the log by more than a bounded row.
const MAX_PATH_CHARS: usize = 512;

/// The last time stamp handed out, so that stamps are strictly increasing.
static LAST_STAMP_MS: AtomicI64 = AtomicI64::new(0);

/// A time stamp for a new entry: the wall clock, nudged forward by a
/// millisecond when needed so that no two entries from this process share a
/// stamp. That keeps `before_ms` an exact cursor: a page that ends at stamp T
/// is continued by `before_ms = T` without skipping an entry that shares T.
fn next_stamp() -> i64 {
    let now = now_ms();
    let previous = LAST_STAMP_MS
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |last| {
            Some(now.max(last.saturating_add(1)))
        })
        .unwrap_or(now);
    now.max(previous.saturating_add(1))
}

/// One recorded API request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct AuditEntry {
    /// Entry id.
    pub id: String,
    /// When the request completed, ms since the epoch; unique and increasing.
    pub time_ms: i64,
    /// The key whose secret was presented (even if expired or revoked); `null` if none matched.
    pub key_id: Option<String>,
    /// The client's IP address as the region saw it.
    pub source_ip: String,
    /// HTTP method.
    pub method: String,
    /// Request path, i.e. the object acted on (no query string).
    pub path: String,
    /// HTTP status of the response.
    pub status: u16,
    /// What was attempted, e.g. `subnet.create`; `unknown` for an unrouted path.
    pub action: String,
}

/// What the API records about a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAuditEntry {
    /// The key whose secret was presented, if any matched.
    pub key_id: Option<String>,
    /// The client's IP address.
    pub source_ip: String,
    /// HTTP method.
    pub method: String,
    /// Request path without the query string.
    pub path: String,
    /// HTTP status of the response.
    pub status: u16,
    /// Action name, e.g. `subnet.create`.
    pub action: String,
}

fn truncate(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

/// An `audit_log` row as stored.
#[derive(sqlx::FromRow)]
struct EntryRow {
    id: String,
    time_ms: i64,
    key_id: Option<String>,
    source_ip: String,
    method: String,
    path: String,
    status: i64,
    action: String,
}

impl From<EntryRow> for AuditEntry {
    fn from(row: EntryRow) -> Self {
        AuditEntry {
            id: row.id,
            time_ms: row.time_ms,
            key_id: row.key_id,
            source_ip: row.source_ip,
            method: row.method,
            path: row.path,
            status: u16::try_from(row.status).unwrap_or(0),
            action: row.action,
        }
    }
}

impl Store {
    /// Appends an entry to the audit log.
    pub async fn record_audit(&self, new: &NewAuditEntry) -> Result<AuditEntry, StoreError> {
        let entry = AuditEntry {
            id: new_id(),
            time_ms: next_stamp(),
            key_id: new.key_id.clone(),
            source_ip: truncate(&new.source_ip, 64),
            method: truncate(&new.method, 16),
            path: truncate(&new.path, MAX_PATH_CHARS),
            status: new.status,
            action: truncate(&new.action, 64),
        };
        sqlx::query(
            "INSERT INTO audit_log (id, time_ms, key_id, source_ip, method, path, status, action) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&entry.id)
        .bind(entry.time_ms)
        .bind(&entry.key_id)
        .bind(&entry.source_ip)
        .bind(&entry.method)
        .bind(&entry.path)
        .bind(i64::from(entry.status))
        .bind(&entry.action)
        .execute(&self.pool)
        .await?;
        Ok(entry)
    }

    /// Up to `limit` (1 to [`MAX_AUDIT_PAGE`]) entries older than `before_ms`
    /// (all when `None`), newest first.
    pub async fn list_audit(
        &self,
        before_ms: Option<i64>,
        limit: u32,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        if !(1..=MAX_AUDIT_PAGE).contains(&limit) {
            return Err(StoreError::Invalid(format!(
                "limit must be between 1 and {MAX_AUDIT_PAGE}"
            )));
        }
        let rows = sqlx::query_as::<_, EntryRow>(
            "SELECT id, time_ms, key_id, source_ip, method, path, status, action FROM audit_log \
             WHERE time_ms < $1 ORDER BY time_ms DESC, id DESC LIMIT $2",
        )
        .bind(before_ms.unwrap_or(i64::MAX))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(AuditEntry::from).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_strictly_increase() {
        let mut last = next_stamp();
        for _ in 0..1000 {
            let stamp = next_stamp();
            assert!(stamp > last);
            last = stamp;
        }
    }

    #[test]
    fn long_text_is_cut_on_a_character_boundary() {
        assert_eq!(truncate("abc", 3), "abc");
        assert_eq!(truncate("ééé", 2), "éé…");
    }
}
