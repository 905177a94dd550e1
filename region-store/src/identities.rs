//! Rack identities and the single-use enrolment tokens that create them.
//!
//! Enrolment is one transaction: the token is consumed and the identity is
//! created together, or neither happens.

use rand::RngCore;
use serde::Serialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use utoipa::ToSchema;

use super::{now_ms, Store, StoreError};

/// An enrolment token's public record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct EnrolmentToken {
    /// Token id (the part after `emt_`).
    pub id: String,
    /// The rack id the token is bound to, if any.
    pub rack_name: Option<String>,
    /// Creation time, ms since the epoch.
    pub created_ms: i64,
    /// Expiry, ms since the epoch.
    pub expires_ms: i64,
    /// When it was used, if it was.
    pub used_ms: Option<i64>,
    /// The rack it created, if used.
    pub rack_id: Option<String>,
}

/// A freshly created token: the only moment its full text is known.
#[derive(Debug, Clone)]
pub struct CreatedEnrolmentToken {
    /// The record.
    pub token: EnrolmentToken,
    /// The text to hand to the site (`emt_<id>_<secret>`).
    pub text: String,
}

/// What enrolment stores for a new rack.
#[derive(Debug, Clone)]
pub struct NewIdentity {
    /// The rack id.
    pub rack_id: String,
    /// Link secret sealed with the master key.
    pub link_secret_sealed: String,
    /// Broker password sealed with the master key.
    pub broker_password_sealed: String,
}

/// A rack's identity as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct RackIdentity {
    /// The rack id.
    pub rack_id: String,
    /// Link secret sealed with the master key (never returned by the API).
    #[serde(skip)]
    pub link_secret_sealed: String,
    /// Current key epoch.
    pub key_epoch: u32,
    /// Broker password sealed with the master key (never returned by the API).
    #[serde(skip)]
    pub broker_password_sealed: String,
    /// Enrolment time, ms since the epoch.
    pub enrolled_ms: i64,
    /// Last key rotation (enrolment counts as the first), ms since the epoch.
    pub key_rotated_ms: i64,
    /// Revocation time, if revoked.
    pub revoked_ms: Option<i64>,
    /// The next link secret while a rotation is under way (never returned by the API).
    #[serde(skip)]
    pub next_secret_sealed: Option<String>,
    /// The secret before the last rotation (never returned by the API).
    #[serde(skip)]
    pub previous_secret_sealed: Option<String>,
}

/// Why enrolment was refused.
#[derive(Debug, thiserror::Error)]
pub enum EnrolError {
    /// Unknown token or wrong secret.
    #[error("unknown enrolment token")]
    Unknown,
    /// The token was used before.
    #[error("enrolment token already used")]
    Used,
    /// The token expired.
    #[error("enrolment token expired")]
    Expired,
    /// A rack with that id exists already.
    #[error("rack {0} is already enrolled")]
    AlreadyEnrolled(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for EnrolError {
    fn from(error: sqlx::Error) -> Self {
        EnrolError::Store(StoreError::Database(error))
    }
}

fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// An `enrolment_tokens` row as listed (its columns are the record's own).
#[derive(sqlx::FromRow)]
struct TokenRow {
    id: String,
    rack_name: Option<String>,
    created_ms: i64,
    expires_ms: i64,
    used_ms: Option<i64>,
    rack_id: Option<String>,
}

impl From<TokenRow> for EnrolmentToken {
    fn from(row: TokenRow) -> Self {
        EnrolmentToken {
            id: row.id,
            rack_name: row.rack_name,
            created_ms: row.created_ms,
            expires_ms: row.expires_ms,
            used_ms: row.used_ms,
            rack_id: row.rack_id,
        }
    }
}

/// What checking an enrolment token reads of it.
#[derive(sqlx::FromRow)]
struct TokenCheckRow {
    secret_sha256: String,
    rack_name: Option<String>,
    expires_ms: i64,
    used_ms: Option<i64>,
}

/// A `rack_identities` row as stored: the [`IDENTITY_COLUMNS`].
#[derive(sqlx::FromRow)]
struct IdentityRow {
    rack_id: String,
    link_secret_sealed: String,
    key_epoch: i64,
    broker_password_sealed: String,
    enrolled_ms: i64,
    key_rotated_ms: i64,
    revoked_ms: Option<i64>,
    next_secret_sealed: Option<String>,
    previous_secret_sealed: Option<String>,
}

impl From<IdentityRow> for RackIdentity {
    fn from(row: IdentityRow) -> Self {
        RackIdentity {
            rack_id: row.rack_id,
            link_secret_sealed: row.link_secret_sealed,
            key_epoch: row.key_epoch as u32,
            broker_password_sealed: row.broker_password_sealed,
            enrolled_ms: row.enrolled_ms,
            key_rotated_ms: row.key_rotated_ms,
            revoked_ms: row.revoked_ms,
            next_secret_sealed: row.next_secret_sealed,
            previous_secret_sealed: row.previous_secret_sealed,
        }
    }
}

const IDENTITY_COLUMNS: &str = "rack_id, link_secret_sealed, key_epoch, broker_password_sealed, \
    enrolled_ms, key_rotated_ms, revoked_ms, next_secret_sealed, previous_secret_sealed";

impl Store {
    /// Creates a single-use token, valid for `valid_ms`, optionally bound to a rack id.
    pub async fn create_enrolment_token(
        &self,
        rack_name: Option<&str>,
        valid_ms: i64,
    ) -> Result<CreatedEnrolmentToken, StoreError> {
        if let Some(name) = rack_name {
            edgemetal_protocol::RackId::new(name)
                .map_err(|e| StoreError::Invalid(e.to_string()))?;
        }
        if valid_ms <= 0 {
            return Err(StoreError::Invalid("expiry must be in the future".into()));
        }
        let mut id = [0u8; 6];
        let mut secret = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut id);
        rand::thread_rng().fill_bytes(&mut secret);
        let (id, secret) = (hex::encode(id), hex::encode(secret));
        let now = now_ms();
        let token = EnrolmentToken {
            id: id.clone(),
            rack_name: rack_name.map(str::to_string),
            created_ms: now,
            expires_ms: now + valid_ms,
            used_ms: None,
            rack_id: None,
        };
        sqlx::query(
            "INSERT INTO enrolment_tokens (id, secret_sha256, rack_name, created_ms, expires_ms) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&token.id)
        .bind(sha256_hex(&secret))
        .bind(&token.rack_name)
        .bind(token.created_ms)
        .bind(token.expires_ms)
        .execute(&self.pool)
        .await?;
        Ok(CreatedEnrolmentToken {
            token,
            text: format!("emt_{id}_{secret}"),
        })
    }

    /// All enrolment tokens, newest first.
    pub async fn list_enrolment_tokens(&self) -> Result<Vec<EnrolmentToken>, StoreError> {
        Ok(sqlx::query_as::<_, TokenRow>(
            "SELECT id, rack_name, created_ms, expires_ms, used_ms, rack_id FROM enrolment_tokens \
             ORDER BY created_ms DESC",
        )
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(EnrolmentToken::from)
        .collect())
    }

    /// The rack id a token would create: its bound name, or `make_id()`.
    /// Checks the token without consuming it.
    pub async fn check_enrolment_token(&self, text: &str) -> Result<Option<String>, EnrolError> {
        let (id, secret) = text
            .strip_prefix("emt_")
            .and_then(|rest| rest.split_once('_'))
            .ok_or(EnrolError::Unknown)?;
        let row = sqlx::query_as::<_, TokenCheckRow>(
            "SELECT secret_sha256, rack_name, expires_ms, used_ms FROM enrolment_tokens WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(EnrolError::Unknown)?;
        if !bool::from(
            row.secret_sha256
                .as_bytes()
                .ct_eq(sha256_hex(secret).as_bytes()),
        ) {
            return Err(EnrolError::Unknown);
        }
        if row.used_ms.is_some() {
            return Err(EnrolError::Used);
        }
        if row.expires_ms <= now_ms() {
            return Err(EnrolError::Expired);
        }
        Ok(row.rack_name)
    }

    /// Consumes the token and creates the identity, atomically.
    pub async fn enrol(
        &self,
        text: &str,
        identity: NewIdentity,
    ) -> Result<RackIdentity, EnrolError> {
        self.check_enrolment_token(text).await?;
        let id = text
            .strip_prefix("emt_")
            .and_then(|rest| rest.split_once('_'))
            .map(|(id, _)| id)
            .ok_or(EnrolError::Unknown)?;
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        // The conditional update is the single point of truth: of two racks
        // presenting one token at once, exactly one consumes it.
        let consumed = sqlx::query(
            "UPDATE enrolment_tokens SET used_ms = $1, rack_id = $2 \
             WHERE id = $3 AND used_ms IS NULL AND expires_ms > $1",
        )
        .bind(now)
        .bind(&identity.rack_id)
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if consumed == 0 {
            return Err(EnrolError::Used);
        }
        let inserted = sqlx::query(
            "INSERT INTO rack_identities (rack_id, link_secret_sealed, key_epoch, \
             broker_password_sealed, enrolled_ms, key_rotated_ms, up_sequence, down_sequence) \
             VALUES ($1, $2, 1, $3, $4, $4, 0, 0)",
        )
        .bind(&identity.rack_id)
        .bind(&identity.link_secret_sealed)
        .bind(&identity.broker_password_sealed)
        .bind(now)
        .execute(&mut *tx)
        .await;
        if let Err(error) = inserted {
            return Err(
                match StoreError::from_write(error, || identity.rack_id.clone()) {
                    StoreError::Conflict(id) => EnrolError::AlreadyEnrolled(id),
                    other => EnrolError::Store(other),
                },
            );
        }
        tx.commit().await?;
        self.get_identity(&identity.rack_id).await?.ok_or_else(|| {
            EnrolError::Store(StoreError::not_found(
                "rack identity",
                identity.rack_id.clone(),
            ))
        })
    }

    /// One rack's identity.
    pub async fn get_identity(&self, rack_id: &str) -> Result<Option<RackIdentity>, StoreError> {
        Ok(sqlx::query_as::<_, IdentityRow>(&format!(
            "SELECT {IDENTITY_COLUMNS} FROM rack_identities WHERE rack_id = $1"
        ))
        .bind(rack_id)
        .fetch_optional(&self.pool)
        .await?
        .map(RackIdentity::from))
    }

    /// Every identity, revoked ones included.
    pub async fn list_identities(&self) -> Result<Vec<RackIdentity>, StoreError> {
        Ok(sqlx::query_as::<_, IdentityRow>(&format!(
            "SELECT {IDENTITY_COLUMNS} FROM rack_identities ORDER BY rack_id"
        ))
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(RackIdentity::from)
        .collect())
    }

    /// Revokes a rack: the region refuses its messages and the broker its login.
    pub async fn revoke_identity(&self, rack_id: &str) -> Result<(), StoreError> {
        let updated = sqlx::query(
            "UPDATE rack_identities SET revoked_ms = $1 WHERE rack_id = $2 AND revoked_ms IS NULL",
        )
        .bind(now_ms())
        .bind(rack_id)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if updated == 0 && self.get_identity(rack_id).await?.is_none() {
            return Err(StoreError::not_found("rack", rack_id));
        }
        // Nothing it sends is accepted from now on, its last will included.
        sqlx::query("UPDATE racks SET online = 0 WHERE id = $1")
            .bind(rack_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Starts a key rotation: stores the next secret; the current one stays
    /// in use until the rack proves it switched ([`Store::promote_key`]).
    pub async fn start_key_rotation(
        &self,
        rack_id: &str,
        next_sealed: &str,
    ) -> Result<(), StoreError> {
        let updated = sqlx::query(
            "UPDATE rack_identities SET next_secret_sealed = $1 WHERE rack_id = $2 AND revoked_ms IS NULL",
        )
        .bind(next_sealed)
        .bind(rack_id)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if updated == 0 {
            return Err(StoreError::not_found("active rack", rack_id));
        }
        Ok(())
    }

    /// Makes the pending secret current (epoch + 1); the old one is gone.
    pub async fn promote_key(&self, rack_id: &str, next_epoch: u32) -> Result<bool, StoreError> {
        let updated = sqlx::query(
            "UPDATE rack_identities SET previous_secret_sealed = link_secret_sealed, link_secret_sealed = next_secret_sealed, \
             key_epoch = key_epoch + 1, key_rotated_ms = $1, next_secret_sealed = NULL \
             WHERE rack_id = $2 AND next_secret_sealed IS NOT NULL AND key_epoch + 1 = $3",
        )
        .bind(now_ms())
        .bind(rack_id)
        .bind(i64::from(next_epoch))
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(updated == 1)
    }

    /// The rack's upward high-water mark: the highest sequence accepted.
    pub async fn up_sequence(&self, rack_id: &str) -> Result<u64, StoreError> {
        let mark: Option<i64> =
            sqlx::query_scalar("SELECT up_sequence FROM rack_identities WHERE rack_id = $1")
                .bind(rack_id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(mark.unwrap_or(0).max(0) as u64)
    }

    /// The next sequence number for a message to a rack (shared by region replicas).
    ///
    /// One statement, so one commit: every message to a rack (each 512 KiB
    /// chunk of a boot resource sync included) takes a number here.
    /// `UPDATE … RETURNING` is atomic on SQLite (3.35+) and PostgreSQL alike.
    pub async fn next_down_sequence(&self, rack_id: &str) -> Result<u64, StoreError> {
        let sequence: i64 = sqlx::query_scalar(
            "UPDATE rack_identities SET down_sequence = down_sequence + 1 WHERE rack_id = $1 \
             RETURNING down_sequence",
        )
        .bind(rack_id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::not_found("rack", rack_id))?;
        Ok(sequence as u64)
    }

    /// Replaces every sealed secret (master key rotation), in one transaction.
    pub async fn reseal_rack_secrets(
        &self,
        mut reseal: impl FnMut(&str) -> Result<String, String>,
    ) -> Result<usize, StoreError> {
        let mut tx = self.begin_write().await?;
        type Row = (String, String, String, Option<String>, Option<String>);
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT rack_id, link_secret_sealed, broker_password_sealed, next_secret_sealed, \
             previous_secret_sealed FROM rack_identities",
        )
        .fetch_all(&mut *tx)
        .await?;
        for (rack_id, link, broker, next, previous) in &rows {
            let mut optional = |sealed: &Option<String>| -> Result<Option<String>, StoreError> {
                sealed
                    .as_deref()
                    .map(|s| reseal(s).map_err(StoreError::Invalid))
                    .transpose()
            };
            let (next, previous) = (optional(next)?, optional(previous)?);
            sqlx::query(
                "UPDATE rack_identities SET link_secret_sealed = $1, broker_password_sealed = $2, \
                 next_secret_sealed = $3, previous_secret_sealed = $4 WHERE rack_id = $5",
            )
            .bind(reseal(link).map_err(StoreError::Invalid)?)
            .bind(reseal(broker).map_err(StoreError::Invalid)?)
            .bind(next)
            .bind(previous)
            .bind(rack_id)
            .execute(&mut *tx)
            .await?;
        }
        // BMC passwords are sealed with the same key.
        let machines: Vec<(String, String)> = sqlx::query_as(
            "SELECT id, power_password_sealed FROM machines WHERE power_password_sealed IS NOT NULL",
        )
        .fetch_all(&mut *tx)
        .await?;
        for (machine_id, sealed) in &machines {
            sqlx::query("UPDATE machines SET power_password_sealed = $1 WHERE id = $2")
                .bind(reseal(sealed).map_err(StoreError::Invalid)?)
                .bind(machine_id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(rows.len() + machines.len())
    }
}
