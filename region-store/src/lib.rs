//! The region's store: one interface over SQLite (default) and PostgreSQL.
//!
//! Design choice: one implementation on `sqlx::Any` with a *portable schema*
//! rather than two implementations. `Any` maps only integers, floats, text and
//! bytes, so ids, addresses and JSON are stored as text, times as integer
//! milliseconds and booleans as integers. In exchange every query is written
//! once and the same store test suite exercises both databases through the
//! same code. Each backend keeps its own migration folder so that a later,
//! backend-specific index or type can diverge without touching the other.
//!
//! Configuration mutations are serialised by bumping the generation row
//! first in their transaction: on PostgreSQL that row lock orders concurrent
//! writers, on SQLite the first write takes the database write lock, so the
//! validation that follows (overlaps, containment) sees a stable view.

mod api_keys;
mod audit;
mod boot_resources;
mod changes;
mod deployments;
mod dns;
mod frames;
mod hardware_tests;
mod identities;
mod leases;
mod lifecycle;
mod machine_boot;
mod machines;
mod os_images;
mod power;
mod racks;
mod reservations;
mod subnets;
pub mod syslog;

use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{Any, AnyPool, Transaction};

pub use api_keys::{
    ApiKey, ApiKeyRole, CreatedApiKey, KeyCheck, KeyState, NewApiKey, MAX_KEY_LIFETIME_SECS,
};
pub use audit::{AuditEntry, NewAuditEntry, MAX_AUDIT_PAGE};
pub use boot_resources::{kind_name, parse_kind, BootResourceRecord};
pub use changes::{Change, ChangeFeed};
pub use deployments::{NewRun, RunRecord};
pub use edgemetal_region_model::dns::{
    parse_record_data, valid_domain_name, DnsRecordRow, DomainRecord, NewDnsRecord, NewDomain,
};
pub use edgemetal_region_model::ipam::{
    IpRangeRecord, IpRangeSpec, RangePurpose, ReservationRecord, ReservationSpec, SubnetRecord,
    SubnetServices, SubnetSpec,
};
pub use edgemetal_region_model::site::{LeaseRecord, RackRecord};
pub use frames::FrameWrite;
pub use identities::{
    CreatedEnrolmentToken, EnrolError, EnrolmentToken, NewIdentity, RackIdentity,
};
pub use leases::AppliedEvents;
pub use lifecycle::{token_digest, CommissioningRecord, ResultsOutcome, TokenChange, Transition};
pub use machines::{HardwareSummary, Machine, MachineFilter, NewMachine, ARCHITECTURES};
pub use os_images::{OsImageFacts, OsImageRecord, RackHolding};
pub use power::{MachineEvent, PowerSettings, PowerStatus, StoredPower};
pub use racks::RackHello;
pub use syslog::{parse_severity, LogQuery, LogRecord, LogRetention, MAX_LOG_PAGE};

/// What went wrong in a store operation.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The object does not exist.
    #[error("{kind} {id} not found")]
    NotFound {
        /// Kind of object, e.g. `subnet`.
        kind: &'static str,
        /// The id that was looked up.
        id: String,
    },
    /// The change conflicts with existing data (duplicate, overlap).
    #[error("{0}")]
    Conflict(String),
    /// The change is invalid on its own.
    #[error("{0}")]
    Invalid(String),
    /// The database failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Migrations could not be applied.
    #[error("migration error: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    /// A database URL that is neither SQLite nor PostgreSQL.
    #[error("unsupported database URL {0:?}: use sqlite://PATH or postgres://...")]
    UnsupportedUrl(String),
}

impl From<edgemetal_region_model::ipam::RuleError> for StoreError {
    fn from(error: edgemetal_region_model::ipam::RuleError) -> Self {
        use edgemetal_region_model::ipam::RuleError;
        match error {
            RuleError::Invalid(message) => StoreError::Invalid(message),
            RuleError::Conflict(message) => StoreError::Conflict(message),
        }
    }
}

impl StoreError {
    pub(crate) fn not_found(kind: &'static str, id: impl Into<String>) -> Self {
        StoreError::NotFound {
            kind,
            id: id.into(),
        }
    }

    /// Turns a unique-constraint violation into a [`StoreError::Conflict`].
    fn from_write(error: sqlx::Error, conflict: impl FnOnce() -> String) -> Self {
        match &error {
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                StoreError::Conflict(conflict())
            }
            _ => StoreError::Database(error),
        }
    }
}

/// Which database the store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite file.
    Sqlite,
    /// PostgreSQL server.
    Postgres,
}

/// The region's persistent state.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    changes: ChangeFeed,
}

/// A configuration change in progress: a transaction that holds the config
/// write lock (the generation bump) and announces [`Change::Config`] (or the
/// change it was opened for) once committed.
pub(crate) struct ConfigChange {
    tx: Transaction<'static, Any>,
    feed: ChangeFeed,
    change: Change,
}

impl ConfigChange {
    /// Announce `change` instead of [`Change::Config`] on commit.
    pub(crate) fn announcing(mut self, change: Change) -> Self {
        self.change = change;
        self
    }

    /// The transaction, for helpers that take one.
    pub(crate) fn transaction(&mut self) -> &mut Transaction<'static, Any> {
        &mut self.tx
    }

    /// Commits, then announces the change.
    pub(crate) async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await?;
        self.feed.emit(self.change);
        Ok(())
    }
}

impl std::ops::Deref for ConfigChange {
    type Target = <Any as sqlx::Database>::Connection;
    fn deref(&self) -> &Self::Target {
        &self.tx
    }
}

impl std::ops::DerefMut for ConfigChange {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.tx
    }
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

impl Store {
    /// Connects to `url` (`sqlite://…` or `postgres://…`) and applies migrations.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(StoreError::UnsupportedUrl(url.to_string()));
        };
        let options = AnyConnectOptions::from_str(url)?;
        let pool = AnyPoolOptions::new()
            .max_connections(if backend == Backend::Sqlite { 4 } else { 10 })
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL: readers never block the writer; busy_timeout: writers queue
                        // instead of failing while another holds the write lock.
                        sqlx::query("PRAGMA journal_mode = WAL")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA busy_timeout = 5000")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA foreign_keys = ON")
                            .execute(&mut *conn)
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        let migrator = match backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrator.run(&pool).await?;
        Ok(Store {
            pool,
            backend,
            changes: ChangeFeed::default(),
        })
    }

    /// What committed writes changed, for the link to pass on.
    pub fn changes(&self) -> &ChangeFeed {
        &self.changes
    }

    /// Which database this store runs on.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// The current configuration generation.
    pub async fn generation(&self) -> Result<u64, StoreError> {
        let generation: i64 =
            sqlx::query_scalar("SELECT generation FROM config_state WHERE id = 1")
                .fetch_one(&self.pool)
                .await?;
        Ok(generation as u64)
    }

    /// Begins a transaction that reads before it writes. On SQLite it takes
    /// the write lock first, with a write that changes nothing: otherwise,
    /// if another writer commits between its read and its write, WAL mode
    /// fails it at once with "database is locked" (a stale read snapshot,
    /// which `busy_timeout` does not retry). PostgreSQL needs no such step.
    pub(crate) async fn begin_write(&self) -> Result<Transaction<'static, Any>, StoreError> {
        let mut tx = self.pool.begin().await?;
        if self.backend == Backend::Sqlite {
            sqlx::query("UPDATE config_state SET id = id WHERE id = 1")
                .execute(&mut *tx)
                .await?;
        }
        Ok(tx)
    }

    /// Starts a configuration change: takes the config write lock by bumping
    /// the generation, inside a transaction the caller commits (or drops).
    async fn begin_config_change(&self) -> Result<ConfigChange, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE config_state SET generation = generation + 1 WHERE id = 1")
            .execute(&mut *tx)
            .await?;
        Ok(ConfigChange {
            tx,
            feed: self.changes.clone(),
            change: Change::Config,
        })
    }
}

/// Milliseconds since the Unix epoch, as stored in the database.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// A stored text column's value parsed; one that does not parse is corrupt
/// data, reported as `stored COLUMN "TEXT" does not parse`.
pub(crate) fn parse_column<T: FromStr>(column: &str, text: &str) -> Result<T, StoreError> {
    text.parse()
        .map_err(|_| StoreError::Invalid(format!("stored {column} {text:?} does not parse")))
}

/// A stored JSON column's value; one that does not parse is reported as
/// `stored WHAT: ERROR`.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(
    what: &str,
    text: &str,
) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Invalid(format!("stored {what}: {e}")))
}

/// A fresh random id for a new row.
fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}
