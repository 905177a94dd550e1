//! Machine log lines from the racks' syslog relays: stored per batch (each
//! line once, keyed by its rack and queue position), listed per machine
//! newest first with filters and an id cursor, and pruned by age and count.

use edgemetal_protocol::LogLine;
use serde::Serialize;
use utoipa::ToSchema;

use super::{Backend, FrameWrite, Store, StoreError};

/// The most lines one page may hold.
pub const MAX_LOG_PAGE: u32 = 1000;

/// Syslog severity names, by code (RFC 5424, table 2).
pub const SEVERITIES: [&str; 8] = [
    "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
];

/// Syslog facility names, by code (RFC 5424, table 1).
const FACILITIES: [&str; 24] = [
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv",
    "ftp", "ntp", "audit", "alert", "clock", "local0", "local1", "local2", "local3", "local4",
    "local5", "local6", "local7",
];

/// The severity code for a name (`warning`, `warn`, `err`, `error`, …) or a digit.
pub fn parse_severity(text: &str) -> Option<u8> {
    let text = text.trim().to_ascii_lowercase();
    if let Ok(code) = text.parse::<u8>() {
        return (code < 8).then_some(code);
    }
    let name = match text.as_str() {
        "emergency" | "panic" => "emerg",
        "critical" => "crit",
        "error" => "err",
        "warn" => "warning",
        other => other,
    };
    SEVERITIES.iter().position(|s| *s == name).map(|i| i as u8)
}

/// One stored log line as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct LogRecord {
    /// Cursor position: pass as `before_id` to continue after this line.
    pub id: i64,
    /// The message's own time stamp, ms since the epoch, when it had one.
    pub time_ms: Option<i64>,
    /// When the rack received it, ms since the epoch (the rack's clock).
    pub received_ms: i64,
    /// Severity name (`err`, `warning`, …); `null` for a malformed line.
    pub severity: Option<String>,
    /// Facility name (`daemon`, `local0`, …); `null` for a malformed line.
    pub facility: Option<String>,
    /// HOSTNAME field.
    pub hostname: Option<String>,
    /// APP-NAME (RFC 5424) or TAG (RFC 3164).
    pub app_name: Option<String>,
    /// The message text; the whole raw message when malformed.
    pub text: String,
    /// The message parsed as neither RFC 5424 nor RFC 3164.
    pub malformed: bool,
    /// The message was cut at the rack's size limit.
    pub truncated: bool,
    /// The rack that relayed it.
    pub rack_id: String,
    /// The sender's address.
    pub source: String,
}

/// Which of a machine's lines to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogQuery {
    /// Received at or after this time (ms since the epoch).
    pub since_ms: Option<i64>,
    /// Received before this time.
    pub until_ms: Option<i64>,
    /// This severity or worse (lower code).
    pub max_severity: Option<u8>,
    /// Text containing this, case-insensitively (ASCII).
    pub contains: Option<String>,
    /// Lines older than this cursor.
    pub before_id: Option<i64>,
    /// Page size, 1 to [`MAX_LOG_PAGE`].
    pub limit: u32,
}

/// How long and how many log lines the region keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogRetention {
    /// Lines received longer ago than this are deleted (0: kept by age).
    pub max_age_ms: i64,
    /// Beyond this many lines the oldest are deleted (0: no bound).
    pub max_rows: i64,
}

/// A `machine_logs` row as listed.
#[derive(sqlx::FromRow)]
struct LogRow {
    id: i64,
    logged_ms: Option<i64>,
    received_ms: i64,
    severity: Option<i64>,
    facility: Option<i64>,
    hostname: Option<String>,
    app_name: Option<String>,
    text: String,
    malformed: i64,
    truncated: i64,
    rack_id: String,
    source: String,
}

impl From<LogRow> for LogRecord {
    fn from(row: LogRow) -> Self {
        let name = |table: &[&str], code: Option<i64>| {
            code.and_then(|c| table.get(usize::try_from(c).ok()?).map(|s| s.to_string()))
        };
        LogRecord {
            id: row.id,
            time_ms: row.logged_ms,
            received_ms: row.received_ms,
            severity: name(&SEVERITIES, row.severity),
            facility: name(&FACILITIES, row.facility),
            hostname: row.hostname,
            app_name: row.app_name,
            text: row.text,
            malformed: row.malformed != 0,
            truncated: row.truncated != 0,
            rack_id: row.rack_id,
            source: row.source,
        }
    }
}

impl Store {
    /// [`FrameWrite::store_log_lines`] on its own (no frame's mark raised).
    pub async fn store_log_lines(
        &self,
        rack_id: &str,
        lines: &[LogLine],
    ) -> Result<u64, StoreError> {
        let mut write = self.begin_unsequenced().await?;
        let up_to = write.store_log_lines(rack_id, lines).await?;
        write.commit().await?;
        Ok(up_to)
    }

    /// A machine's lines, newest first. Lines that arrived before the
    /// machine was created (known then only by MAC) are included.
    pub async fn list_machine_logs(
        &self,
        machine_id: &str,
        query: &LogQuery,
    ) -> Result<Vec<LogRecord>, StoreError> {
        if !(1..=MAX_LOG_PAGE).contains(&query.limit) {
            return Err(StoreError::Invalid(format!(
                "limit must be between 1 and {MAX_LOG_PAGE}"
            )));
        }
        let machine = self.get_machine(machine_id).await?;
        let contains = match self.backend {
            Backend::Sqlite => "instr(lower(text), lower($7)) > 0",
            Backend::Postgres => "strpos(lower(text), lower($7)) > 0",
        };
        let sql = format!(
            "SELECT id, logged_ms, received_ms, severity, facility, hostname, app_name, text, \
             malformed, truncated, rack_id, source FROM machine_logs \
             WHERE (machine_id = $1 OR (machine_id IS NULL AND mac = $2)) \
             AND id < $3 AND received_ms >= $4 AND received_ms < $5 \
             AND ($6 < 0 OR severity <= $6) AND ({contains} OR $8 = 0) \
             ORDER BY id DESC LIMIT $9"
        );
        let rows = sqlx::query_as::<_, LogRow>(&sql)
            .bind(machine_id)
            .bind(machine.mac.to_string())
            .bind(query.before_id.unwrap_or(i64::MAX))
            .bind(query.since_ms.unwrap_or(i64::MIN))
            .bind(query.until_ms.unwrap_or(i64::MAX))
            .bind(query.max_severity.map_or(-1, i64::from))
            .bind(query.contains.clone().unwrap_or_default())
            .bind(i64::from(query.contains.is_some()))
            .bind(i64::from(query.limit))
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().map(LogRecord::from).collect())
    }

    /// Deletes lines older than the retention age and the oldest beyond
    /// its row count; returns how many went.
    pub async fn prune_logs(
        &self,
        retention: LogRetention,
        now_ms: i64,
    ) -> Result<u64, StoreError> {
        let mut deleted = 0;
        if retention.max_age_ms > 0 {
            deleted += sqlx::query("DELETE FROM machine_logs WHERE received_ms < $1")
                .bind(now_ms.saturating_sub(retention.max_age_ms))
                .execute(&self.pool)
                .await?
                .rows_affected();
        }
        if retention.max_rows > 0 {
            // The id of the newest line that falls outside the bound, if any.
            let cut: Option<i64> = sqlx::query_scalar(
                "SELECT id FROM machine_logs ORDER BY id DESC LIMIT 1 OFFSET $1",
            )
            .bind(retention.max_rows)
            .fetch_optional(&self.pool)
            .await?;
            if let Some(cut) = cut {
                deleted += sqlx::query("DELETE FROM machine_logs WHERE id <= $1")
                    .bind(cut)
                    .execute(&self.pool)
                    .await?
                    .rows_affected();
            }
        }
        Ok(deleted)
    }
}

/// Prunes the log lines every `every`, forever.
pub async fn run_retention(store: Store, retention: LogRetention, every: std::time::Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match store.prune_logs(retention, super::now_ms()).await {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, "pruned machine log lines"),
            Err(error) => tracing::warn!(%error, "cannot prune machine log lines"),
        }
    }
}

/// What a rack's log frames write, inside the frame's transaction.
impl FrameWrite {
    /// Stores a rack's batch of log lines (lines already stored are skipped)
    /// and returns the highest id of the batch: the ack to send back.
    pub async fn store_log_lines(
        &mut self,
        rack_id: &str,
        lines: &[LogLine],
    ) -> Result<u64, StoreError> {
        for line in lines {
            let mac = line.mac.map(|m| m.to_string());
            sqlx::query(
                "INSERT INTO machine_logs (rack_id, rack_line_id, machine_id, mac, source, \
                 received_ms, logged_ms, facility, severity, hostname, app_name, text, malformed, truncated) \
                 VALUES ($1, $2, (SELECT id FROM machines WHERE mac = $3), $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) \
                 ON CONFLICT (rack_id, rack_line_id) DO NOTHING",
            )
            .bind(rack_id)
            .bind(line.id as i64)
            .bind(mac.clone())
            .bind(mac)
            .bind(line.source.to_string())
            .bind(line.received_ms as i64)
            .bind(line.timestamp_ms)
            .bind(line.facility.map(i64::from))
            .bind(line.severity.map(i64::from))
            .bind(line.hostname.clone())
            .bind(line.app_name.clone())
            .bind(&line.text)
            .bind(i64::from(line.malformed))
            .bind(i64::from(line.truncated))
            .execute(&mut *self.tx)
            .await?;
        }
        Ok(lines.iter().map(|l| l.id).max().unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severity_names_and_codes() {
        assert_eq!(parse_severity("warning"), Some(4));
        assert_eq!(parse_severity("WARN"), Some(4));
        assert_eq!(parse_severity("error"), Some(3));
        assert_eq!(parse_severity("7"), Some(7));
        assert_eq!(parse_severity("8"), None);
        assert_eq!(parse_severity("loud"), None);
    }
}
