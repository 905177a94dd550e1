//! API keys: the secret is shown once at creation and stored only as a hash.
//!
//! A key reads `em_<id>_<secret>`; the id finds the row, the secret's SHA-256
//! is compared in constant time. The secret is 256 random bits, so a fast
//! hash is enough: there is nothing to brute-force that a slow hash would slow.

use rand::RngCore;
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::Row;
use utoipa::ToSchema;

use super::{now_ms, Store, StoreError};

/// An API key's public record (never the secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ApiKey {
    /// Key id, the part between `em_` and the secret.
    pub id: String,
    /// Operator-given name.
    pub name: String,
    /// Creation time, ms since the epoch.
    pub created_ms: i64,
}

/// A key just created: the only moment its full token is known.
#[derive(Debug, Clone)]
pub struct CreatedApiKey {
    /// The stored record.
    pub key: ApiKey,
    /// The bearer token to hand to the operator.
    pub token: String,
}

fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Store {
    /// Creates a key and returns its token, which is not stored.
    pub async fn create_api_key(&self, name: &str) -> Result<CreatedApiKey, StoreError> {
        let mut id_bytes = [0u8; 6];
        let mut secret_bytes = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut id_bytes);
        rand::thread_rng().fill_bytes(&mut secret_bytes);
        let id = hex::encode(id_bytes);
        let secret = hex::encode(secret_bytes);
        let key = ApiKey {
            id: id.clone(),
            name: name.to_string(),
            created_ms: now_ms(),
        };
        sqlx::query(
            "INSERT INTO api_keys (id, name, secret_sha256, created_ms) VALUES ($1, $2, $3, $4)",
        )
        .bind(&key.id)
        .bind(&key.name)
        .bind(hash_secret(&secret))
        .bind(key.created_ms)
        .execute(&self.pool)
        .await?;
        Ok(CreatedApiKey {
            key,
            token: format!("em_{id}_{secret}"),
        })
    }

    /// Checks a bearer token; returns the key it belongs to, or `None`.
    pub async fn verify_api_key(&self, token: &str) -> Result<Option<ApiKey>, StoreError> {
        let Some((id, secret)) = token
            .strip_prefix("em_")
            .and_then(|rest| rest.split_once('_'))
        else {
            return Ok(None);
        };
        let row =
            sqlx::query("SELECT id, name, secret_sha256, created_ms FROM api_keys WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        let Some(row) = row else { return Ok(None) };
        let stored: String = row.try_get("secret_sha256")?;
        if !constant_time_eq(stored.as_bytes(), hash_secret(secret).as_bytes()) {
            return Ok(None);
        }
        Ok(Some(ApiKey {
            id: row.try_get("id")?,
            name: row.try_get("name")?,
            created_ms: row.try_get("created_ms")?,
        }))
    }
}
