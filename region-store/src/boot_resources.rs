//! Boot resources: named, per-architecture kernels, initrds and squashfs
//! images whose content is in the blob store. Uploading a resource again
//! under the same name, architecture and kind replaces it (a new release).

use edgemetal_protocol::BootResourceKind;
use serde::Serialize;
use utoipa::ToSchema;

use super::{new_id, now_ms, Store, StoreError};

/// A boot resource as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct BootResourceRecord {
    /// Region-assigned id.
    pub id: String,
    /// Name/release, e.g. `ephemeral`.
    pub name: String,
    /// Architecture, e.g. `amd64`.
    pub architecture: String,
    /// `kernel`, `initrd` or `squashfs`.
    pub kind: String,
    /// SHA-256 of the content, hex.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
    /// Upload time, ms since the epoch.
    pub created_ms: i64,
}

/// The API name of a kind.
pub fn kind_name(kind: BootResourceKind) -> &'static str {
    match kind {
        BootResourceKind::Kernel => "kernel",
        BootResourceKind::Initrd => "initrd",
        BootResourceKind::Squashfs => "squashfs",
        BootResourceKind::Rootfs => "rootfs",
        BootResourceKind::File => "file",
    }
}

/// The kind an API name stands for.
pub fn parse_kind(name: &str) -> Option<BootResourceKind> {
    Some(match name {
        "kernel" => BootResourceKind::Kernel,
        "initrd" => BootResourceKind::Initrd,
        "squashfs" => BootResourceKind::Squashfs,
        "rootfs" => BootResourceKind::Rootfs,
        "file" => BootResourceKind::File,
        _ => return None,
    })
}

/// A `boot_resources` row as stored.
#[derive(sqlx::FromRow)]
struct ResourceRow {
    id: String,
    name: String,
    architecture: String,
    kind: String,
    sha256: String,
    size: i64,
    created_ms: i64,
}

impl From<ResourceRow> for BootResourceRecord {
    fn from(row: ResourceRow) -> Self {
        BootResourceRecord {
            id: row.id,
            name: row.name,
            architecture: row.architecture,
            kind: row.kind,
            sha256: row.sha256,
            size: row.size as u64,
            created_ms: row.created_ms,
        }
    }
}

const COLUMNS: &str = "id, name, architecture, kind, sha256, size, created_ms";

impl Store {
    /// Records an uploaded resource, replacing one with the same name,
    /// architecture and kind; returns it and the sha256 of the content it
    /// replaced (whose blob may now be unreferenced). Bumps the generation:
    /// racks learn what to cache from the snapshot.
    pub async fn put_boot_resource(
        &self,
        name: &str,
        architecture: &str,
        kind: BootResourceKind,
        sha256: &[u8; 32],
        size: u64,
    ) -> Result<(BootResourceRecord, Option<String>), StoreError> {
        let mut tx = self
            .begin_config_change()
            .await?
            .announcing(super::Change::BootResources);
        let replaced: Option<String> = sqlx::query_scalar(
            "SELECT sha256 FROM boot_resources WHERE name = $1 AND architecture = $2 AND kind = $3",
        )
        .bind(name)
        .bind(architecture)
        .bind(kind_name(kind))
        .fetch_optional(&mut *tx)
        .await?;
        sqlx::query(
            "DELETE FROM boot_resources WHERE name = $1 AND architecture = $2 AND kind = $3",
        )
        .bind(name)
        .bind(architecture)
        .bind(kind_name(kind))
        .execute(&mut *tx)
        .await?;
        let record = BootResourceRecord {
            id: new_id(),
            name: name.to_string(),
            architecture: architecture.to_string(),
            kind: kind_name(kind).to_string(),
            sha256: hex::encode(sha256),
            size,
            created_ms: now_ms(),
        };
        sqlx::query(
            "INSERT INTO boot_resources (id, name, architecture, kind, sha256, size, created_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&record.id)
        .bind(&record.name)
        .bind(&record.architecture)
        .bind(&record.kind)
        .bind(&record.sha256)
        .bind(size as i64)
        .bind(record.created_ms)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok((record, replaced.filter(|old| *old != hex::encode(sha256))))
    }

    /// All boot resources, by name, architecture and kind.
    pub async fn list_boot_resources(&self) -> Result<Vec<BootResourceRecord>, StoreError> {
        Ok(sqlx::query_as::<_, ResourceRow>(&format!(
            "SELECT {COLUMNS} FROM boot_resources ORDER BY name, architecture, kind"
        ))
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(BootResourceRecord::from)
        .collect())
    }

    /// One boot resource.
    pub async fn get_boot_resource(&self, id: &str) -> Result<BootResourceRecord, StoreError> {
        let row = sqlx::query_as::<_, ResourceRow>(&format!(
            "SELECT {COLUMNS} FROM boot_resources WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::not_found("boot resource", id))?;
        Ok(row.into())
    }

    /// Deletes a boot resource; returns it. Bumps the generation.
    pub async fn delete_boot_resource(&self, id: &str) -> Result<BootResourceRecord, StoreError> {
        let record = self.get_boot_resource(id).await?;
        let mut tx = self
            .begin_config_change()
            .await?
            .announcing(super::Change::BootResources);
        sqlx::query("DELETE FROM boot_resources WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(record)
    }

    /// Whether any resource still has this content.
    pub async fn blob_in_use(&self, sha256: &str) -> Result<bool, StoreError> {
        let count: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM boot_resources WHERE sha256 = $1")
                .bind(sha256)
                .fetch_one(&self.pool)
                .await?;
        Ok(count > 0)
    }
}
