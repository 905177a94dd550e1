//! Racks as the region sees them: identity from their hello, presence from
//! heartbeats and last wills, and which configuration they serve.

use edgemetal_protocol::{ApplyOutcome, Heartbeat, Hello, RackId, SnapshotAck};
use serde::Serialize;

use super::{parse_json, FrameWrite, RackRecord, Store, StoreError};

/// What the region stores from a rack's hello.
pub type RackHello = Hello;

const RACK_COLUMNS: &str = "id, hostname, software_version, protocol_version, online, \
    first_seen_ms, last_seen_ms, applied_generation, last_apply_error, interfaces_json, \
    services_json, health_json, bmc_networks_json, target_generation";

/// A `racks` row as stored: the [`RACK_COLUMNS`].
#[derive(sqlx::FromRow)]
struct RackRow {
    id: String,
    hostname: String,
    software_version: String,
    protocol_version: i64,
    online: i64,
    first_seen_ms: i64,
    last_seen_ms: i64,
    applied_generation: Option<i64>,
    last_apply_error: Option<String>,
    interfaces_json: String,
    services_json: String,
    health_json: String,
    bmc_networks_json: String,
    target_generation: Option<i64>,
}

impl RackRow {
    /// The record, with `config_generation` as the generation to serve when
    /// the rack has been sent none of its own.
    fn into_record(self, config_generation: u64) -> Result<RackRecord, StoreError> {
        let applied_generation = self.applied_generation.map(|g| g as u64);
        let config_generation = self
            .target_generation
            .map_or(config_generation, |g| g as u64);
        Ok(RackRecord {
            id: self.id,
            hostname: self.hostname,
            software_version: self.software_version,
            protocol_version: self.protocol_version as u16,
            status: if self.online != 0 {
                "online"
            } else {
                "offline"
            }
            .to_string(),
            first_seen_ms: self.first_seen_ms,
            last_seen_ms: self.last_seen_ms,
            applied_generation,
            config_generation,
            in_sync: applied_generation == Some(config_generation),
            last_apply_error: self.last_apply_error,
            interfaces: parse_json("interfaces_json", &self.interfaces_json)?,
            services: parse_json("services_json", &self.services_json)?,
            health: parse_json("health_json", &self.health_json)?,
            bmc_networks: parse_json("bmc_networks_json", &self.bmc_networks_json)?,
        })
    }
}

fn to_json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".into())
}

impl Store {
    /// [`FrameWrite::record_hello`] on its own (no frame's mark raised).
    pub async fn record_hello(
        &self,
        hello: &RackHello,
        now_ms: i64,
        alive: bool,
    ) -> Result<(), StoreError> {
        let mut write = self.begin_unsequenced().await?;
        write.record_hello(hello, now_ms, alive).await?;
        write.commit().await
    }

    /// [`FrameWrite::record_snapshot_ack`] on its own (no frame's mark raised).
    pub async fn record_snapshot_ack(
        &self,
        rack_id: &RackId,
        ack: &SnapshotAck,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let mut write = self.begin_unsequenced().await?;
        let known = write.record_snapshot_ack(rack_id, ack, now_ms).await?;
        write.commit().await?;
        Ok(known)
    }

    /// [`FrameWrite::mark_rack_online`] on its own (no frame's mark raised).
    pub async fn mark_rack_online(
        &self,
        rack_id: &RackId,
        now_ms: i64,
        sequence: u64,
    ) -> Result<(), StoreError> {
        let mut write = self.begin_unsequenced().await?;
        write.mark_rack_online(rack_id, now_ms, sequence).await?;
        write.commit().await
    }

    /// Takes a v2 rack's last will: marks it offline only if the will was
    /// sealed just before the `Online` of the connection last seen, and only
    /// once. Returns whether it was taken (false: a stale or replayed will).
    pub async fn take_last_will(
        &self,
        rack_id: &RackId,
        will_sequence: u64,
    ) -> Result<bool, StoreError> {
        let taken = sqlx::query(
            "UPDATE racks SET online = 0, presence_sequence = NULL \
             WHERE id = $1 AND presence_sequence = $2",
        )
        .bind(rack_id.as_str())
        .bind(will_sequence as i64 + 1)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(taken > 0)
    }

    /// Marks one rack offline (its last will fired or it said goodbye).
    pub async fn mark_rack_offline(&self, rack_id: &RackId) -> Result<(), StoreError> {
        sqlx::query("UPDATE racks SET online = 0 WHERE id = $1")
            .bind(rack_id.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Marks every online rack not heard from since `cutoff_ms` offline; returns their ids.
    pub async fn mark_silent_racks_offline(
        &self,
        cutoff_ms: i64,
    ) -> Result<Vec<String>, StoreError> {
        let ids: Vec<String> =
            sqlx::query_scalar("SELECT id FROM racks WHERE online = 1 AND last_seen_ms < $1")
                .bind(cutoff_ms)
                .fetch_all(&self.pool)
                .await?;
        for id in &ids {
            sqlx::query("UPDATE racks SET online = 0 WHERE id = $1 AND last_seen_ms < $2")
                .bind(id)
                .bind(cutoff_ms)
                .execute(&self.pool)
                .await?;
        }
        Ok(ids)
    }

    /// Ids of the racks that are online, sorted.
    pub async fn online_rack_ids(&self) -> Result<Vec<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT id FROM racks WHERE online = 1 ORDER BY id")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// The generation and content digest of the configuration last sent to the rack.
    pub async fn rack_target(&self, rack_id: &RackId) -> Result<Option<(u64, String)>, StoreError> {
        let row: Option<(Option<i64>, Option<String>)> =
            sqlx::query_as("SELECT target_generation, target_digest FROM racks WHERE id = $1")
                .bind(rack_id.as_str())
                .fetch_optional(&self.pool)
                .await?;
        Ok(match row {
            Some((Some(generation), Some(digest))) => Some((generation as u64, digest)),
            _ => None,
        })
    }

    /// Records that the rack is sent its configuration numbered `generation`;
    /// false when the rack has never been heard from (no record to keep it in).
    pub async fn set_rack_target(
        &self,
        rack_id: &RackId,
        generation: u64,
        digest: &str,
    ) -> Result<bool, StoreError> {
        let updated = sqlx::query(
            "UPDATE racks SET target_generation = $1, target_digest = $2 WHERE id = $3",
        )
        .bind(generation as i64)
        .bind(digest)
        .bind(rack_id.as_str())
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(updated > 0)
    }

    /// The generation the rack should serve: its own, else the region's.
    pub async fn rack_generation(&self, rack_id: &RackId) -> Result<u64, StoreError> {
        match self.rack_target(rack_id).await? {
            Some((generation, _)) => Ok(generation),
            None => self.generation().await,
        }
    }

    /// Records that rack presence changed: DHCP takeover depends on it, so
    /// it is part of the configuration and bumps the generation.
    pub async fn presence_changed(&self) -> Result<(), StoreError> {
        self.begin_config_change().await?.commit().await?;
        Ok(())
    }

    /// All racks, ordered by id.
    pub async fn list_racks(&self) -> Result<Vec<RackRecord>, StoreError> {
        let generation = self.generation().await?;
        sqlx::query_as::<_, RackRow>(&format!("SELECT {RACK_COLUMNS} FROM racks ORDER BY id"))
            .fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(|row| row.into_record(generation))
            .collect()
    }

    /// One rack.
    pub async fn get_rack(&self, id: &str) -> Result<RackRecord, StoreError> {
        let generation = self.generation().await?;
        let row = sqlx::query_as::<_, RackRow>(&format!(
            "SELECT {RACK_COLUMNS} FROM racks WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::not_found("rack", id))?;
        row.into_record(generation)
    }
}

/// What a rack's presence and configuration frames write (hello, heartbeat,
/// snapshot ack, online status), inside the frame's transaction.
impl FrameWrite {
    /// Records a hello: creates the rack or refreshes what it reported; a
    /// live hello (`alive`) also marks it online.
    pub async fn record_hello(
        &mut self,
        hello: &RackHello,
        now_ms: i64,
        alive: bool,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO racks (id, hostname, software_version, protocol_version, online, \
             first_seen_ms, last_seen_ms, applied_generation, last_apply_error, interfaces_json, \
             services_json, health_json, bmc_networks_json) \
             VALUES ($1, $2, $3, $4, $9, $5, $5, $6, NULL, $7, $8, '[]', $10) \
             ON CONFLICT (id) DO UPDATE SET hostname = $2, software_version = $3, \
             protocol_version = $4, online = CASE WHEN $9 = 1 THEN 1 ELSE racks.online END, \
             last_seen_ms = CASE WHEN $9 = 1 THEN $5 ELSE racks.last_seen_ms END, \
             applied_generation = $6, interfaces_json = $7, services_json = $8, \
             bmc_networks_json = $10",
        )
        .bind(hello.rack_id.as_str())
        .bind(&hello.hostname)
        .bind(&hello.software_version)
        .bind(i64::from(hello.protocol_version))
        .bind(now_ms)
        .bind(hello.applied_generation.map(|g| g.0 as i64))
        .bind(to_json(&hello.interfaces))
        .bind(to_json(&hello.services))
        .bind(i64::from(alive))
        .bind(to_json(&hello.bmc_networks))
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    /// Records a heartbeat; returns false when the rack is unknown (no hello yet).
    pub async fn record_heartbeat(
        &mut self,
        rack_id: &RackId,
        heartbeat: &Heartbeat,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let updated = sqlx::query(
            "UPDATE racks SET online = 1, last_seen_ms = $1, applied_generation = $2, \
             health_json = $3 WHERE id = $4",
        )
        .bind(now_ms)
        .bind(heartbeat.applied_generation.map(|g| g.0 as i64))
        .bind(to_json(&heartbeat.services))
        .bind(rack_id.as_str())
        .execute(&mut *self.tx)
        .await?
        .rows_affected();
        Ok(updated > 0)
    }

    /// Records a snapshot ack; returns false when the rack is unknown.
    pub async fn record_snapshot_ack(
        &mut self,
        rack_id: &RackId,
        ack: &SnapshotAck,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let query = match &ack.outcome {
            ApplyOutcome::Applied => sqlx::query(
                "UPDATE racks SET online = 1, last_seen_ms = $1, applied_generation = $2, \
                 last_apply_error = NULL WHERE id = $3",
            )
            .bind(now_ms)
            .bind(ack.generation.0 as i64)
            .bind(rack_id.as_str()),
            ApplyOutcome::Failed { reason } => sqlx::query(
                "UPDATE racks SET online = 1, last_seen_ms = $1, last_apply_error = $2 \
                 WHERE id = $3",
            )
            .bind(now_ms)
            .bind(format!("generation {}: {reason}", ack.generation))
            .bind(rack_id.as_str()),
            // A delta that did not fit: the link resyncs it, nothing is wrong.
            ApplyOutcome::Resync { .. } => {
                sqlx::query("UPDATE racks SET online = 1, last_seen_ms = $1 WHERE id = $2")
                    .bind(now_ms)
                    .bind(rack_id.as_str())
            }
        };
        Ok(query.execute(&mut *self.tx).await?.rows_affected() > 0)
    }

    /// Marks a known rack online (its presence message said so). `sequence`
    /// is that message's: the will of the same connection is the one
    /// sealed just before it (v2), the only offline status then accepted.
    pub async fn mark_rack_online(
        &mut self,
        rack_id: &RackId,
        now_ms: i64,
        sequence: u64,
    ) -> Result<(), StoreError> {
        // Retained presence may arrive before the retained hello: the row is
        // created bare then, and the hello fills it in.
        sqlx::query(
            "INSERT INTO racks (id, hostname, software_version, protocol_version, online, \
             first_seen_ms, last_seen_ms, interfaces_json, services_json, health_json, \
             presence_sequence) VALUES ($3, '', '', 0, 1, $1, $1, '[]', '[]', '[]', $2) \
             ON CONFLICT (id) DO UPDATE SET online = 1, last_seen_ms = $1, presence_sequence = $2",
        )
        .bind(now_ms)
        .bind(sequence as i64)
        .bind(rack_id.as_str())
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }
}
