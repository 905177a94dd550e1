//! API keys: the secret is shown once at creation and stored only as a hash.
//!
//! A key reads `em_<id>_<secret>`; the id finds the row, the secret's SHA-256
//! is compared in constant time. The secret is 256 random bits, so a fast
//! hash is enough: there is nothing to brute-force that a slow hash would slow.
//!
//! Each key has a role and may expire; revoking a key keeps its row (with the
//! revocation time) so that the audit log's key ids keep meaning something.

use std::fmt;
use std::str::FromStr;

use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use utoipa::ToSchema;

use super::{now_ms, Store, StoreError};

/// The longest lifetime a key may be given: ten years. Longer is "never", say so.
pub const MAX_KEY_LIFETIME_SECS: u64 = 10 * 365 * 24 * 3600;

/// How stale `last_used_ms` may get before a use writes it again. Writing it on
/// every request would turn every read into a database write.
const LAST_USED_RESOLUTION_MS: i64 = 60_000;

/// What a key may do. The order matters: each role may do everything the
/// roles before it may.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum ApiKeyRole {
    /// Reads (GET) only.
    ReadOnly,
    /// Reads, and writes subnets, ranges and machines.
    Operator,
    /// Everything, including managing API keys and reading the audit log.
    Admin,
}

impl ApiKeyRole {
    /// The role as stored and serialised: `admin`, `operator` or `read_only`.
    pub fn as_str(self) -> &'static str {
        match self {
            ApiKeyRole::ReadOnly => "read_only",
            ApiKeyRole::Operator => "operator",
            ApiKeyRole::Admin => "admin",
        }
    }

    /// Whether a key with this role may do what needs `required`.
    pub fn allows(self, required: ApiKeyRole) -> bool {
        self >= required
    }
}

impl fmt::Display for ApiKeyRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ApiKeyRole {
    type Err = StoreError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "admin" => Ok(ApiKeyRole::Admin),
            "operator" => Ok(ApiKeyRole::Operator),
            // The CLI spells it with a dash, JSON and the database with an underscore.
            "read_only" | "read-only" => Ok(ApiKeyRole::ReadOnly),
            other => Err(StoreError::Invalid(format!(
                "unknown role {other:?}: use admin, operator or read_only"
            ))),
        }
    }
}

/// An API key's public record (never the secret nor its hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ApiKey {
    /// Key id, the part between `em_` and the secret.
    pub id: String,
    /// Operator-given name.
    pub name: String,
    /// What the key may do.
    pub role: ApiKeyRole,
    /// Creation time, ms since the epoch.
    pub created_ms: i64,
    /// When the key stops working, ms since the epoch; `null`: never.
    pub expires_ms: Option<i64>,
    /// When the key was revoked, ms since the epoch; `null`: not revoked.
    pub revoked_ms: Option<i64>,
    /// Last successful use, ms since the epoch, to within a minute; `null`: never used.
    pub last_used_ms: Option<i64>,
}

/// Whether a key works at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    /// Usable.
    Active,
    /// Past its expiry time.
    Expired,
    /// Revoked by an admin.
    Revoked,
}

impl ApiKey {
    /// The key's state at `now_ms`; revocation wins over expiry.
    pub fn state_at(&self, now_ms: i64) -> KeyState {
        if self.revoked_ms.is_some() {
            KeyState::Revoked
        } else if self.expires_ms.is_some_and(|expires| expires <= now_ms) {
            KeyState::Expired
        } else {
            KeyState::Active
        }
    }
}

/// What to create a key with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewApiKey {
    /// A name to recognise the key by: 1 to 64 characters, no control characters.
    pub name: String,
    /// What the key may do.
    pub role: ApiKeyRole,
    /// Lifetime in seconds (1 to [`MAX_KEY_LIFETIME_SECS`]); `None`: no expiry.
    pub expires_in_secs: Option<u64>,
}

/// A key just created: the only moment its full token is known.
#[derive(Debug, Clone)]
pub struct CreatedApiKey {
    /// The stored record.
    pub key: ApiKey,
    /// The bearer token to hand to the operator.
    pub token: String,
}

/// The result of checking a bearer token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyCheck {
    /// The secret matches and the key is active.
    Valid(ApiKey),
    /// The secret matches but the key has expired.
    Expired(ApiKey),
    /// The secret matches but the key was revoked.
    Revoked(ApiKey),
    /// Malformed token or unknown id: nothing more is said.
    Unknown,
    /// The id names a key but the secret is wrong. Told to the caller (not
    /// to the client, which gets the same 401) so that guesses at one key
    /// are counted apart from garbage.
    WrongSecret,
}

fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

fn validate_name(name: &str) -> Result<(), StoreError> {
    let length = name.chars().count();
    if length == 0 || length > 64 || name.chars().any(char::is_control) {
        return Err(StoreError::Invalid(format!(
            "invalid key name {name:?}: use 1 to 64 characters without control characters"
        )));
    }
    Ok(())
}

/// The expiry time of a key created at `created_ms` that lives `secs` seconds.
fn expiry(created_ms: i64, secs: u64) -> Result<i64, StoreError> {
    if !(1..=MAX_KEY_LIFETIME_SECS).contains(&secs) {
        return Err(StoreError::Invalid(format!(
            "expires_in_secs must be between 1 and {MAX_KEY_LIFETIME_SECS} (ten years); \
             leave it out for a key that does not expire"
        )));
    }
    // In range, secs * 1000 fits easily in an i64; the checks keep it honest.
    i64::try_from(secs)
        .ok()
        .and_then(|secs| secs.checked_mul(1000))
        .and_then(|ms| created_ms.checked_add(ms))
        .ok_or_else(|| StoreError::Invalid("expiry time out of range".to_string()))
}

const KEY_COLUMNS: &str = "id, name, role, created_ms, expires_ms, revoked_ms, last_used_ms";

/// An `api_keys` row as stored: the [`KEY_COLUMNS`].
#[derive(sqlx::FromRow)]
struct KeyRow {
    id: String,
    name: String,
    role: String,
    created_ms: i64,
    expires_ms: Option<i64>,
    revoked_ms: Option<i64>,
    last_used_ms: Option<i64>,
}

/// The [`KEY_COLUMNS`] and the secret's hash, to check a token against.
#[derive(sqlx::FromRow)]
struct KeyWithSecretRow {
    #[sqlx(flatten)]
    key: KeyRow,
    secret_sha256: String,
}

impl TryFrom<KeyRow> for ApiKey {
    type Error = StoreError;

    fn try_from(row: KeyRow) -> Result<Self, StoreError> {
        // An unknown stored role is corrupt data, not bad input: fail closed with a
        // database error (500) rather than guess a role.
        let role = row.role.parse::<ApiKeyRole>().map_err(|_| {
            StoreError::Database(sqlx::Error::Decode(
                format!("api_keys.role holds an unknown role {:?}", row.role).into(),
            ))
        })?;
        Ok(ApiKey {
            id: row.id,
            name: row.name,
            role,
            created_ms: row.created_ms,
            expires_ms: row.expires_ms,
            revoked_ms: row.revoked_ms,
            last_used_ms: row.last_used_ms,
        })
    }
}

impl Store {
    /// Creates a key and returns its token, which is not stored.
    pub async fn create_api_key(&self, new: &NewApiKey) -> Result<CreatedApiKey, StoreError> {
        validate_name(&new.name)?;
        let created_ms = now_ms();
        let expires_ms = new
            .expires_in_secs
            .map(|secs| expiry(created_ms, secs))
            .transpose()?;
        let mut id_bytes = [0u8; 6];
        let mut secret_bytes = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut id_bytes);
        rand::thread_rng().fill_bytes(&mut secret_bytes);
        let id = hex::encode(id_bytes);
        let secret = hex::encode(secret_bytes);
        let key = ApiKey {
            id: id.clone(),
            name: new.name.clone(),
            role: new.role,
            created_ms,
            expires_ms,
            revoked_ms: None,
            last_used_ms: None,
        };
        sqlx::query(
            "INSERT INTO api_keys (id, name, secret_sha256, created_ms, role, expires_ms) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&key.id)
        .bind(&key.name)
        .bind(hash_secret(&secret))
        .bind(key.created_ms)
        .bind(key.role.as_str())
        .bind(key.expires_ms)
        .execute(&self.pool)
        .await
        .map_err(|e| StoreError::from_write(e, || format!("API key id {id} already exists")))?;
        Ok(CreatedApiKey {
            key,
            token: format!("em_{id}_{secret}"),
        })
    }

    /// Checks a bearer token; the key is returned only for a usable key.
    pub async fn verify_api_key(&self, token: &str) -> Result<Option<ApiKey>, StoreError> {
        Ok(match self.check_api_key(token).await? {
            KeyCheck::Valid(key) => Some(key),
            _ => None,
        })
    }

    /// Checks a bearer token and says why it is refused when it is.
    ///
    /// Expiry and revocation are told apart only once the secret matched, so
    /// they tell nothing to someone who does not hold the key.
    pub async fn check_api_key(&self, token: &str) -> Result<KeyCheck, StoreError> {
        let Some((id, secret)) = token
            .strip_prefix("em_")
            .and_then(|rest| rest.split_once('_'))
        else {
            return Ok(KeyCheck::Unknown);
        };
        let row = sqlx::query_as::<_, KeyWithSecretRow>(&format!(
            "SELECT {KEY_COLUMNS}, secret_sha256 FROM api_keys WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(KeyCheck::Unknown);
        };
        if !bool::from(
            row.secret_sha256
                .as_bytes()
                .ct_eq(hash_secret(secret).as_bytes()),
        ) {
            return Ok(KeyCheck::WrongSecret);
        }
        let key = ApiKey::try_from(row.key)?;
        let now = now_ms();
        Ok(match key.state_at(now) {
            KeyState::Revoked => KeyCheck::Revoked(key),
            KeyState::Expired => KeyCheck::Expired(key),
            KeyState::Active => {
                self.note_key_use(&key, now).await;
                KeyCheck::Valid(key)
            }
        })
    }

    /// Records a use, at most once a minute per key.
    async fn note_key_use(&self, key: &ApiKey, now: i64) {
        if key
            .last_used_ms
            .is_some_and(|last| now - last < LAST_USED_RESOLUTION_MS)
        {
            return;
        }
        let result = sqlx::query("UPDATE api_keys SET last_used_ms = $1 WHERE id = $2")
            .bind(now)
            .bind(&key.id)
            .execute(&self.pool)
            .await;
        // Bookkeeping only: a failure here must not refuse a valid key.
        if let Err(error) = result {
            tracing::warn!(key_id = %key.id, %error, "cannot record API key use");
        }
    }

    /// Every key, revoked and expired ones included, oldest first.
    pub async fn list_api_keys(&self) -> Result<Vec<ApiKey>, StoreError> {
        let rows = sqlx::query_as::<_, KeyRow>(&format!(
            "SELECT {KEY_COLUMNS} FROM api_keys ORDER BY created_ms, id"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(ApiKey::try_from).collect()
    }

    /// One key.
    pub async fn get_api_key(&self, id: &str) -> Result<ApiKey, StoreError> {
        let row = sqlx::query_as::<_, KeyRow>(&format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(row) => row.try_into(),
            None => Err(StoreError::not_found("API key", id)),
        }
    }

    /// Revokes a key: it stops working at once. Revoking a revoked key keeps
    /// the first revocation time.
    pub async fn revoke_api_key(&self, id: &str) -> Result<ApiKey, StoreError> {
        sqlx::query("UPDATE api_keys SET revoked_ms = $1 WHERE id = $2 AND revoked_ms IS NULL")
            .bind(now_ms())
            .bind(id)
            .execute(&self.pool)
            .await?;
        self.get_api_key(id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_by_what_they_allow() {
        use ApiKeyRole::*;
        assert!(Admin.allows(Admin) && Admin.allows(Operator) && Admin.allows(ReadOnly));
        assert!(!Operator.allows(Admin) && Operator.allows(Operator) && Operator.allows(ReadOnly));
        assert!(!ReadOnly.allows(Admin) && !ReadOnly.allows(Operator) && ReadOnly.allows(ReadOnly));
    }

    #[test]
    fn roles_round_trip_through_text() {
        for role in [
            ApiKeyRole::Admin,
            ApiKeyRole::Operator,
            ApiKeyRole::ReadOnly,
        ] {
            assert_eq!(role.as_str().parse::<ApiKeyRole>().unwrap(), role);
            assert_eq!(
                serde_json::to_value(role).unwrap(),
                serde_json::Value::String(role.as_str().to_string())
            );
        }
        assert_eq!(
            "read-only".parse::<ApiKeyRole>().unwrap(),
            ApiKeyRole::ReadOnly
        );
        assert!("root".parse::<ApiKeyRole>().is_err());
    }

    #[test]
    fn state_prefers_revocation_and_expires_at_the_boundary() {
        let mut key = ApiKey {
            id: "k".into(),
            name: "k".into(),
            role: ApiKeyRole::Admin,
            created_ms: 0,
            expires_ms: Some(1_000),
            revoked_ms: None,
            last_used_ms: None,
        };
        assert_eq!(key.state_at(999), KeyState::Active);
        assert_eq!(key.state_at(1_000), KeyState::Expired);
        key.revoked_ms = Some(10);
        assert_eq!(key.state_at(500), KeyState::Revoked);
        key.expires_ms = None;
        key.revoked_ms = None;
        assert_eq!(key.state_at(i64::MAX), KeyState::Active);
    }

    #[test]
    fn names_and_lifetimes_are_validated() {
        assert!(validate_name("ci").is_ok());
        assert!(validate_name("").is_err());
        assert!(validate_name("a\nb").is_err());
        assert!(validate_name(&"x".repeat(65)).is_err());
        assert_eq!(expiry(1_000, 1).unwrap(), 2_000);
        assert!(expiry(0, 0).is_err());
        assert!(expiry(0, MAX_KEY_LIFETIME_SECS + 1).is_err());
        assert!(expiry(i64::MAX, 1).is_err());
    }
}
