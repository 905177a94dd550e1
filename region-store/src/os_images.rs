//! The OS image catalogue: what the installer needs of each image beyond
//! its bytes (format, unpacked size, by content address), and how far each
//! rack's cache holds each boot resource, as the racks report it.

use edgemetal_protocol::{RackId, ResourceHeld};
use serde::Serialize;
use utoipa::ToSchema;

use super::{now_ms, FrameWrite, Store, StoreError};

/// An OS image's facts beyond its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OsImageFacts {
    /// e.g. `tar.zst`.
    pub format: String,
    /// Its size unpacked.
    pub uncompressed_bytes: u64,
}

/// One OS image in the catalogue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct OsImageRecord {
    /// Its name, e.g. `debian/bookworm`.
    pub name: String,
    /// Its architecture.
    pub architecture: String,
    /// Its format, e.g. `tar.zst`.
    pub format: String,
    /// Its size as stored (compressed).
    pub size: u64,
    /// Its size unpacked.
    pub uncompressed_bytes: u64,
    /// SHA-256 of the stored bytes, hex.
    pub sha256: String,
    /// The racks that were given it, and how far each holds it.
    pub racks: Vec<RackHolding>,
}

/// How far one rack's cache holds a resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct RackHolding {
    /// The rack.
    pub rack_id: String,
    /// Bytes cached.
    pub cached: u64,
    /// Complete, verified and served.
    pub ready: bool,
    /// When the rack last reported it, ms since the epoch.
    pub updated_ms: i64,
}

#[derive(sqlx::FromRow)]
struct CatalogueRow {
    name: String,
    architecture: String,
    format: String,
    size: i64,
    uncompressed_bytes: i64,
    sha256: String,
}

#[derive(sqlx::FromRow)]
struct HoldingRow {
    rack_id: String,
    sha256: String,
    cached: i64,
    ready: i64,
    updated_ms: i64,
}

impl Store {
    /// Records an OS image's facts (by content address).
    pub async fn put_os_image(&self, sha256: &str, facts: &OsImageFacts) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO os_images (sha256, format, uncompressed_bytes) VALUES ($1, $2, $3) \
             ON CONFLICT (sha256) DO UPDATE SET format = $2, uncompressed_bytes = $3",
        )
        .bind(sha256)
        .bind(&facts.format)
        .bind(facts.uncompressed_bytes as i64)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// An OS image's facts, if it is one.
    pub async fn os_image(&self, sha256: &str) -> Result<Option<OsImageFacts>, StoreError> {
        let row: Option<(String, i64)> =
            sqlx::query_as("SELECT format, uncompressed_bytes FROM os_images WHERE sha256 = $1")
                .bind(sha256)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|(format, bytes)| OsImageFacts {
            format,
            uncompressed_bytes: bytes.max(0) as u64,
        }))
    }

    /// The OS images, with the racks holding each.
    pub async fn os_image_catalogue(&self) -> Result<Vec<OsImageRecord>, StoreError> {
        let images = sqlx::query_as::<_, CatalogueRow>(
            "SELECT r.name, r.architecture, o.format, r.size, o.uncompressed_bytes, r.sha256 \
             FROM boot_resources r JOIN os_images o ON o.sha256 = r.sha256 \
             WHERE r.kind = 'rootfs' ORDER BY r.name, r.architecture",
        )
        .fetch_all(&self.pool)
        .await?;
        let holdings = sqlx::query_as::<_, HoldingRow>(
            "SELECT rack_id, sha256, cached, ready, updated_ms FROM rack_resources \
             ORDER BY rack_id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(images
            .into_iter()
            .map(|image| OsImageRecord {
                racks: holdings
                    .iter()
                    .filter(|h| h.sha256 == image.sha256)
                    .map(|h| RackHolding {
                        rack_id: h.rack_id.clone(),
                        cached: h.cached.max(0) as u64,
                        ready: h.ready != 0,
                        updated_ms: h.updated_ms,
                    })
                    .collect(),
                name: image.name,
                architecture: image.architecture,
                format: image.format,
                size: image.size.max(0) as u64,
                uncompressed_bytes: image.uncompressed_bytes.max(0) as u64,
                sha256: image.sha256,
            })
            .collect())
    }
}

impl FrameWrite {
    /// Records what a rack's cache holds: its whole report replaces the last.
    pub async fn record_resources(
        &mut self,
        rack_id: &RackId,
        held: &[ResourceHeld],
    ) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM rack_resources WHERE rack_id = $1")
            .bind(rack_id.as_str())
            .execute(&mut *self.tx)
            .await?;
        let now = now_ms();
        for resource in held {
            sqlx::query(
                "INSERT INTO rack_resources (rack_id, sha256, size, cached, ready, updated_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (rack_id, sha256) DO NOTHING",
            )
            .bind(rack_id.as_str())
            .bind(hex::encode(resource.sha256))
            .bind(resource.size as i64)
            .bind(resource.cached.min(resource.size) as i64)
            .bind(i64::from(resource.ready))
            .bind(now)
            .execute(&mut *self.tx)
            .await?;
        }
        Ok(())
    }
}
