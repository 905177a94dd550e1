//! Machine status changes and commissioning results. A status change reads
//! the current status, asks [`crate::lifecycle::next`] whether the action is
//! allowed, and writes the new status only if nobody changed it meanwhile,
//! with its event, in one transaction.

use std::collections::BTreeMap;

use edgemetal_protocol::CommissioningResults;
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::{Any, Transaction};
use utoipa::ToSchema;

use super::machines::parse_status;
use super::{new_id, now_ms, parse_json, Store, StoreError};
use crate::Machine;
use edgemetal_region_model::lifecycle::inventory::{self, Inventory};
use edgemetal_region_model::lifecycle::{next, Action, Context, MachineStatus};

/// What happens to the machine's commissioning token with a status change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenChange {
    /// Leave it.
    Keep,
    /// Issue a new one: sealed for handing out again, hashed for checking.
    Issue {
        /// The token sealed with the master key.
        sealed: String,
        /// Hex SHA-256 of the token.
        sha256: String,
    },
    /// Withdraw it: results posted with it are refused from now on.
    Withdraw,
}

/// A requested status change.
#[derive(Debug, Clone)]
pub struct Transition<'a> {
    /// What happens.
    pub action: Action,
    /// Who asks: an API key's name, or `region`.
    pub actor: &'a str,
    /// Why, for the event log.
    pub reason: &'a str,
    /// When the new status times out, if it does.
    pub deadline_ms: Option<i64>,
    /// The token's fate.
    pub token: TokenChange,
}

/// The region's stored commissioning results of a machine.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct CommissioningRecord {
    /// When the region stored them, ms since the epoch.
    pub received_ms: i64,
    /// The rack that relayed them.
    pub rack_id: String,
    /// `enlist` or `commission`.
    pub purpose: String,
    /// The hardware found.
    pub inventory: Inventory,
    /// Every raw output of the agent by name (bytes that are not UTF-8 are replaced).
    pub outputs: BTreeMap<String, String>,
}

/// What storing a machine's results did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResultsOutcome {
    /// Stored; `ready` when the machine finished commissioning with them.
    Stored {
        /// The machine.
        machine_id: String,
        /// Whether it moved from Commissioning to Ready.
        ready: bool,
    },
    /// Refused (unknown machine, wrong token, wrong status); the reason is in the log and events.
    Refused,
    /// A deploy or release run took a step; nothing else to do.
    Progress,
    /// A deploy or release run failed (its status is failed; power it off).
    RunFailed {
        /// The machine.
        machine_id: String,
    },
    /// A release run erased the disks: the machine is Ready (power it off).
    Released {
        /// The machine.
        machine_id: String,
    },
    /// The installer finished: the machine reboots into its installed
    /// system (its next boot device becomes the disk).
    Installed {
        /// The machine.
        machine_id: String,
    },
    /// The installed system called home: the machine is Deployed.
    Deployed {
        /// The machine.
        machine_id: String,
    },
}

impl ResultsOutcome {
    /// The machine whose status these results changed, if any.
    pub fn changed_machine(&self) -> Option<&str> {
        match self {
            ResultsOutcome::Stored { machine_id, .. }
            | ResultsOutcome::RunFailed { machine_id }
            | ResultsOutcome::Released { machine_id }
            | ResultsOutcome::Deployed { machine_id } => Some(machine_id),
            ResultsOutcome::Refused
            | ResultsOutcome::Progress
            | ResultsOutcome::Installed { .. } => None,
        }
    }
}

/// What a status change reads of a machine.
#[derive(sqlx::FromRow)]
struct StatusRow {
    status: String,
    status_before: Option<String>,
    cpu_count: Option<i64>,
}

/// What storing results reads of a machine.
#[derive(sqlx::FromRow)]
struct ResultsCheckRow {
    mac: String,
    status: String,
    token_sha256: Option<String>,
}

/// A machine with a timed status.
#[derive(sqlx::FromRow)]
struct OverdueRow {
    id: String,
    status: String,
}

/// A `commissioning_results` row as read back.
#[derive(sqlx::FromRow)]
struct ResultsRow {
    received_ms: i64,
    rack_id: String,
    purpose: String,
    inventory_json: String,
    outputs_json: String,
}

impl TryFrom<ResultsRow> for CommissioningRecord {
    type Error = StoreError;

    fn try_from(row: ResultsRow) -> Result<Self, StoreError> {
        Ok(CommissioningRecord {
            received_ms: row.received_ms,
            rack_id: row.rack_id,
            purpose: row.purpose,
            inventory: parse_json("inventory", &row.inventory_json)?,
            outputs: parse_json("outputs", &row.outputs_json)?,
        })
    }
}

/// Hex SHA-256 of a token, as stored.
pub fn token_digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Applies `transition` inside `tx`; returns the statuses before and after.
pub(crate) async fn transition_in(
    tx: &mut Transaction<'_, Any>,
    machine_id: &str,
    transition: &Transition<'_>,
) -> Result<(MachineStatus, MachineStatus), StoreError> {
    let row = sqlx::query_as::<_, StatusRow>(
        "SELECT status, status_before, cpu_count FROM machines WHERE id = $1",
    )
    .bind(machine_id)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or_else(|| StoreError::not_found("machine", machine_id))?;
    let from = parse_status(&row.status)?;
    let context = Context {
        before: row.status_before.as_deref().and_then(MachineStatus::parse),
        commissioned: row.cpu_count.is_some(),
    };
    let to = next(from, transition.action, context)
        .map_err(|illegal| StoreError::Conflict(illegal.to_string()))?;
    let now = now_ms();
    let (token_sealed, token_sha256) = match &transition.token {
        TokenChange::Keep => (None, None),
        TokenChange::Issue { sealed, sha256 } => (Some(sealed.clone()), Some(sha256.clone())),
        TokenChange::Withdraw => (Some(String::new()), Some(String::new())),
    };
    // The status in the WHERE makes a concurrent change lose cleanly.
    let updated = sqlx::query(
        "UPDATE machines SET status = $1, status_before = $2, status_changed_ms = $3, \
         status_deadline_ms = $4, token_sealed = COALESCE($5, token_sealed), \
         token_sha256 = COALESCE($6, token_sha256) WHERE id = $7 AND status = $8",
    )
    .bind(to.as_str())
    .bind(from.as_str())
    .bind(now)
    .bind(transition.deadline_ms)
    .bind(token_sealed)
    .bind(token_sha256)
    .bind(machine_id)
    .bind(from.as_str())
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if updated == 0 {
        return Err(StoreError::Conflict(
            "the machine's status changed meanwhile; try again".into(),
        ));
    }
    let detail = if transition.reason.is_empty() {
        format!("{} → {}", from.label(), to.label())
    } else {
        format!("{} → {}: {}", from.label(), to.label(), transition.reason)
    };
    add_event_in(tx, machine_id, "status", transition.actor, &detail).await?;
    Ok((from, to))
}

/// Appends to a machine's event log inside `tx`. Event ids are UUIDv7, so
/// events of one millisecond still list in the order they happened.
pub(crate) async fn add_event_in(
    tx: &mut Transaction<'_, Any>,
    machine_id: &str,
    kind: &str,
    actor: &str,
    detail: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO machine_events (id, machine_id, at_ms, kind, actor, detail) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(uuid::Uuid::now_v7().to_string())
    .bind(machine_id)
    .bind(now_ms())
    .bind(kind)
    .bind(actor)
    .bind(detail)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Stores results a rack relayed, inside `tx`: the token must be the one
/// issued for the machine's current commissioning, and the machine must be
/// commissioning (or New, for enlistment).
pub(crate) async fn store_results_in(
    tx: &mut Transaction<'_, Any>,
    rack_id: &str,
    results: &CommissioningResults,
) -> Result<ResultsOutcome, StoreError> {
    if results.purpose == "deploy" || results.purpose == "release" {
        return super::deployments::apply_run_results_in(tx, rack_id, results).await;
    }
    let row = sqlx::query_as::<_, ResultsCheckRow>(
        "SELECT mac, status, token_sha256 FROM machines WHERE id = $1",
    )
    .bind(&results.machine_id)
    .fetch_optional(&mut **tx)
    .await?;
    let Some(ResultsCheckRow {
        mac,
        status,
        token_sha256: expected,
    }) = row
    else {
        tracing::warn!(machine = %results.machine_id, rack = rack_id, "results for an unknown machine refused");
        return Ok(ResultsOutcome::Refused);
    };
    let machine_id = results.machine_id.as_str();
    let actor = format!("rack {rack_id}");
    let refusal = if expected.as_deref().unwrap_or("").is_empty()
        || expected.as_deref() != Some(token_digest(&results.token).as_str())
    {
        Some("the token is not the one issued for this run")
    } else if mac != results.mac.to_string() {
        Some("they came from another machine's address")
    } else if status != MachineStatus::Commissioning.as_str()
        && status != MachineStatus::New.as_str()
    {
        Some("the machine is not commissioning")
    } else {
        None
    };
    if let Some(reason) = refusal {
        tracing::warn!(
            machine = machine_id,
            rack = rack_id,
            reason,
            "commissioning results refused"
        );
        add_event_in(
            tx,
            machine_id,
            "commissioning.refused",
            &actor,
            &format!("results refused: {reason}"),
        )
        .await?;
        return Ok(ResultsOutcome::Refused);
    }

    let outputs: BTreeMap<String, Vec<u8>> = results
        .outputs
        .iter()
        .map(|o| (o.name.clone(), o.data.clone()))
        .collect();
    let inventory = inventory::parse(&outputs);
    let raw: BTreeMap<&str, String> = outputs
        .iter()
        .map(|(name, data)| (name.as_str(), String::from_utf8_lossy(data).into_owned()))
        .collect();
    let now = now_ms();
    sqlx::query(
        "INSERT INTO commissioning_results (id, machine_id, received_ms, rack_id, purpose, \
         inventory_json, outputs_json) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(new_id())
    .bind(machine_id)
    .bind(now)
    .bind(rack_id)
    .bind(&results.purpose)
    .bind(serde_json::to_string(&inventory).unwrap_or_default())
    .bind(serde_json::to_string(&raw).unwrap_or_default())
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "UPDATE machines SET cpu_count = $1, memory_mib = $2, storage_bytes = $3, \
         cpu_model = $4, firmware = $5 WHERE id = $6",
    )
    .bind(i64::from(inventory.cpu_count))
    .bind(inventory.memory_mib as i64)
    .bind(inventory.storage_bytes as i64)
    .bind(inventory.cpu_model.clone())
    .bind(inventory.firmware.clone())
    .bind(machine_id)
    .execute(&mut **tx)
    .await?;
    add_event_in(
        tx,
        machine_id,
        "commissioning.results",
        &actor,
        &format!(
            "{} results stored: {} CPUs, {} MiB, {} disks, {} NICs, {}",
            results.purpose,
            inventory.cpu_count,
            inventory.memory_mib,
            inventory.disks.len(),
            inventory.nics.len(),
            inventory.firmware.as_deref().unwrap_or("unknown firmware"),
        ),
    )
    .await?;
    if !inventory.tests.is_empty() {
        let summary: Vec<String> = inventory
            .tests
            .iter()
            .map(|t| format!("{} {}", t.name, t.result.as_str()))
            .collect();
        add_event_in(
            tx,
            machine_id,
            "commissioning.tests",
            &actor,
            &summary.join(", "),
        )
        .await?;
    }
    let commissioning = status == MachineStatus::Commissioning.as_str();
    if commissioning {
        if let Err(why) = super::hardware_tests::judge_in(tx, machine_id, &inventory).await? {
            transition_in(
                tx,
                machine_id,
                &Transition {
                    action: Action::CommissioningFailed,
                    actor: "region",
                    reason: &why,
                    deadline_ms: None,
                    token: TokenChange::Withdraw,
                },
            )
            .await?;
            return Ok(ResultsOutcome::RunFailed {
                machine_id: machine_id.to_string(),
            });
        }
    }
    let ready = commissioning;
    if ready {
        transition_in(
            tx,
            machine_id,
            &Transition {
                action: Action::CommissioningPassed,
                actor: "region",
                reason: "commissioning results stored",
                deadline_ms: None,
                token: TokenChange::Withdraw,
            },
        )
        .await?;
    }
    Ok(ResultsOutcome::Stored {
        machine_id: machine_id.to_string(),
        ready,
    })
}

impl Store {
    /// Applies a status change; a disallowed one is a [`StoreError::Conflict`]
    /// that says what is allowed.
    pub async fn transition(
        &self,
        machine_id: &str,
        transition: Transition<'_>,
    ) -> Result<(Machine, MachineStatus), StoreError> {
        let mut tx = self.begin_write().await?;
        let (from, _) = transition_in(&mut tx, machine_id, &transition).await?;
        tx.commit().await?;
        self.changes
            .emit(super::Change::Machine(machine_id.to_string()));
        Ok((self.get_machine(machine_id).await?, from))
    }

    /// The sealed token of the machine's current run, if one is issued.
    pub async fn sealed_token(&self, machine_id: &str) -> Result<Option<String>, StoreError> {
        let sealed: Option<Option<String>> =
            sqlx::query_scalar("SELECT token_sealed FROM machines WHERE id = $1")
                .bind(machine_id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(sealed.flatten().filter(|s| !s.is_empty()))
    }

    /// Sets a token without a status change (an enlisting machine's).
    pub async fn issue_token(
        &self,
        machine_id: &str,
        sealed: &str,
        sha256: &str,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE machines SET token_sealed = $1, token_sha256 = $2 WHERE id = $3")
            .bind(sealed)
            .bind(sha256)
            .bind(machine_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Machines whose timed status ran out before `now_ms`, with that status.
    pub async fn overdue_machines(
        &self,
        now_ms: i64,
    ) -> Result<Vec<(String, MachineStatus)>, StoreError> {
        let rows = sqlx::query_as::<_, OverdueRow>(
            "SELECT id, status FROM machines WHERE status_deadline_ms IS NOT NULL \
             AND status_deadline_ms < $1",
        )
        .bind(now_ms)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(|row| Some((row.id, MachineStatus::parse(&row.status)?)))
            .collect())
    }

    /// The machine's latest commissioning results.
    pub async fn latest_results(
        &self,
        machine_id: &str,
    ) -> Result<Option<CommissioningRecord>, StoreError> {
        self.get_machine(machine_id).await?;
        let row = sqlx::query_as::<_, ResultsRow>(
            "SELECT received_ms, rack_id, purpose, inventory_json, outputs_json \
             FROM commissioning_results WHERE machine_id = $1 ORDER BY received_ms DESC LIMIT 1",
        )
        .bind(machine_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(CommissioningRecord::try_from).transpose()
    }
}
