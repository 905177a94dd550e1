//! Leases and discoveries reported by racks. Each rack's events carry
//! consecutive ids; applying them and recording the highest id happen in one
//! transaction, so a redelivered batch changes nothing.

use edgemetal_protocol::{RackEvent, RackEventKind};
use edgemetal_region_model::rack_events::{
    boot_stage_event, event_step, lease_moves_machine, lease_state, Enlistment, EventStep,
};

use super::deployments;
use super::lifecycle::{add_event_in, store_results_in, ResultsOutcome};
use super::{new_id, now_ms, LeaseRecord, Store, StoreError};

/// A `leases` row as stored.
#[derive(sqlx::FromRow)]
struct LeaseRow {
    subnet_id: String,
    address: String,
    mac: String,
    state: String,
    expires_ms: i64,
    rack_id: String,
    updated_ms: i64,
}

impl From<LeaseRow> for LeaseRecord {
    fn from(row: LeaseRow) -> Self {
        LeaseRecord {
            subnet_id: row.subnet_id,
            address: row.address,
            mac: row.mac,
            state: row.state,
            expires_ms: row.expires_ms,
            rack_id: row.rack_id,
            updated_ms: row.updated_ms,
        }
    }
}

/// What applying a batch of rack events did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppliedEvents {
    /// The highest event id now applied: the ack to send back.
    pub applied: u64,
    /// How many events this batch applied for the first time (redeliveries
    /// of applied ones count 0: each event is applied exactly once).
    pub newly_applied: u64,
    /// Racks need a new snapshot (a machine's lease began or ended).
    pub config_changed: bool,
    /// Machines created by enlistment.
    pub enlisted: Vec<String>,
    /// Machines whose commissioning results were stored.
    pub results: Vec<ResultsOutcome>,
}

impl Store {
    /// Applies a rack's events with ids above what was applied before;
    /// returns the highest id now applied (the ack to send back), and
    /// whether racks need a new snapshot: a machine's lease began or ended
    /// (its DNS names follow its address). Other clients' leases (the bulk
    /// under load) change nothing racks serve.
    ///
    /// `sequence` is the frame's: the rack's upward mark is raised to it in
    /// the same transaction, so the events and the replay check commit
    /// together or not at all.
    pub async fn apply_rack_events(
        &self,
        rack_id: &str,
        events: &[RackEvent],
        sequence: u64,
    ) -> Result<AppliedEvents, StoreError> {
        let mut machines_moved = false;
        let mut enlisted = Vec::new();
        let mut stored_results = Vec::new();
        let actor = format!("rack {rack_id}");
        let mut tx = self.begin_write().await?;
        super::frames::raise_up_sequence(&mut tx, rack_id, sequence).await?;
        let applied: i64 = sqlx::query_scalar("SELECT events_applied FROM racks WHERE id = $1")
            .bind(rack_id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| StoreError::not_found("rack", rack_id))?;
        let already = applied as u64;
        let mut applied = already;
        let now = now_ms();
        for event in events {
            match event_step(applied, event.id) {
                EventStep::Seen => continue,
                EventStep::Gap => break,
                EventStep::Apply => {}
            }
            match &event.kind {
                RackEventKind::Lease(lease) => {
                    let state = lease_state(lease.change);
                    sqlx::query(
                        "INSERT INTO leases (subnet_id, address, mac, state, expires_ms, rack_id, updated_ms) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (subnet_id, address) DO UPDATE \
                         SET mac = $3, state = $4, expires_ms = $5, rack_id = $6, updated_ms = $7",
                    )
                    .bind(&lease.subnet_id)
                    .bind(lease.address.to_string())
                    .bind(lease.mac.to_string())
                    .bind(state)
                    .bind((lease.expires_at_secs as i64).saturating_mul(1000))
                    .bind(rack_id)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    if lease_moves_machine(lease.change) {
                        let machine: Option<String> =
                            sqlx::query_scalar("SELECT id FROM machines WHERE mac = $1")
                                .bind(lease.mac.to_string())
                                .fetch_optional(&mut *tx)
                                .await?;
                        if let Some(machine) = &machine {
                            let detail = format!("{} {state} ({:?})", lease.address, lease.change);
                            add_event_in(&mut tx, machine, "dhcp.lease", &actor, &detail).await?;
                        }
                        machines_moved |= machine.is_some();
                    }
                }
                RackEventKind::Discovery(discovery) => {
                    // Enlistment: a machine that network-boots and is unknown is created.
                    let mac = discovery.mac.to_string();
                    let known: Option<String> =
                        sqlx::query_scalar("SELECT id FROM machines WHERE mac = $1")
                            .bind(&mac)
                            .fetch_optional(&mut *tx)
                            .await?;
                    if known.is_none() {
                        let enlistment = Enlistment::of(discovery.mac, discovery.arch);
                        let id = new_id();
                        sqlx::query(
                            "INSERT INTO machines (id, mac, hostname, architecture, created_ms) \
                             VALUES ($1, $2, $3, $4, $5)",
                        )
                        .bind(&id)
                        .bind(&mac)
                        .bind(&enlistment.hostname)
                        .bind(enlistment.architecture)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                        add_event_in(&mut tx, &id, "enlisted", &actor, &enlistment.detail).await?;
                        tracing::info!(%mac, rack = rack_id, "enlisted a network-booting machine");
                        enlisted.push(id);
                    }
                }
                RackEventKind::BootProgress(progress) => {
                    let machine: Option<String> =
                        sqlx::query_scalar("SELECT id FROM machines WHERE mac = $1")
                            .bind(progress.mac.to_string())
                            .fetch_optional(&mut *tx)
                            .await?;
                    if let Some(machine) = machine {
                        let (kind, detail) = boot_stage_event(progress.stage);
                        add_event_in(&mut tx, &machine, kind, &actor, detail).await?;
                    }
                }
                RackEventKind::CommissioningResults(results) => {
                    stored_results.push(store_results_in(&mut tx, rack_id, results).await?);
                }
                RackEventKind::InstallProgress(progress) => {
                    stored_results
                        .push(deployments::apply_progress_in(&mut tx, rack_id, progress).await?);
                }
                RackEventKind::PhoneHome(phone_home) => {
                    stored_results.push(
                        deployments::apply_phone_home_in(&mut tx, rack_id, phone_home).await?,
                    );
                }
            }
            applied = event.id;
        }
        sqlx::query("UPDATE racks SET events_applied = $1 WHERE id = $2")
            .bind(applied as i64)
            .bind(rack_id)
            .execute(&mut *tx)
            .await?;
        if machines_moved {
            sqlx::query("UPDATE config_state SET generation = generation + 1 WHERE id = 1")
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        if machines_moved {
            self.changes.emit(super::Change::Config);
        }
        let changed_machines = enlisted.iter().cloned().chain(
            stored_results
                .iter()
                .filter_map(|outcome| outcome.changed_machine().map(str::to_string)),
        );
        for machine_id in changed_machines {
            self.changes.emit(super::Change::Machine(machine_id));
        }
        Ok(AppliedEvents {
            applied,
            newly_applied: applied - already,
            config_changed: machines_moved,
            enlisted,
            results: stored_results,
        })
    }

    /// Leases, optionally of one subnet or one MAC, by address.
    pub async fn list_leases(
        &self,
        subnet_id: Option<&str>,
        mac: Option<&str>,
    ) -> Result<Vec<LeaseRecord>, StoreError> {
        let rows = sqlx::query_as::<_, LeaseRow>(
            "SELECT subnet_id, address, mac, state, expires_ms, rack_id, updated_ms FROM leases \
             WHERE ($1 = '' OR subnet_id = $1) AND ($2 = '' OR mac = $2) ORDER BY subnet_id, address",
        )
        .bind(subnet_id.unwrap_or(""))
        .bind(mac.unwrap_or(""))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(LeaseRecord::from).collect())
    }
}
