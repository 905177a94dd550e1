//! Deploy and release runs, and the OS image facts the installer needs.
//!
//! A run starts with its status change in one transaction
//! ([`Store::start_run`]); what the rack relays afterwards (the installer's
//! steps, its results, the installed system's phone-home) is applied inside
//! the rack-events transaction, and only for the run's own token, from the
//! machine's own interface, while the machine is still in the run's status.

use edgemetal_protocol::{CommissioningResults, InstallProgress, PhoneHome};
use serde::Serialize;
use sqlx::{Any, Transaction};
use utoipa::ToSchema;

use super::lifecycle::{add_event_in, token_digest, transition_in, ResultsOutcome};
use super::{new_id, now_ms, Store, StoreError};
use crate::{Machine, TokenChange, Transition};
use edgemetal_region_model::lifecycle::{Action, MachineStatus};

/// A deploy or release run, as the API shows it (user data stays sealed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct RunRecord {
    /// The run's id: the installed system's cloud-init instance id.
    pub id: String,
    /// The machine.
    pub machine_id: String,
    /// `deploy` or `release`.
    pub purpose: String,
    /// The OS image's name (deploy).
    pub image_name: String,
    /// The OS image's content address (deploy).
    pub image_sha256: String,
    /// `flat` or `lvm` (deploy).
    pub layout: String,
    /// The target disk's serial (deploy); empty: the boot disk.
    pub disk_serial: String,
    /// The installed system's host name (deploy).
    pub hostname: String,
    /// The boot NIC's static address (deploy).
    pub address: Option<String>,
    /// SSH public keys given to the default user (deploy).
    pub ssh_keys: Vec<String>,
    /// The erase mode (release).
    pub erase: String,
    /// `running`, `done` or `failed`.
    pub state: String,
    /// The last step reported.
    pub step: String,
    /// How much of the image was written, 0–100.
    pub progress_pct: i64,
    /// The installed system's SSH host key, from its phone-home.
    pub host_key: String,
    /// Why it failed.
    pub failure: String,
    /// When it started, ms since the epoch.
    pub started_ms: i64,
    /// When it ended.
    pub finished_ms: Option<i64>,
}

/// What a new run records.
#[derive(Debug, Clone)]
pub struct NewRun<'a> {
    /// `deploy` or `release`.
    pub purpose: &'a str,
    /// Image name and content address (deploy; empty for release).
    pub image: (&'a str, &'a str),
    /// `flat` or `lvm`.
    pub layout: &'a str,
    /// The target disk's serial.
    pub disk_serial: &'a str,
    /// The installed system's host name.
    pub hostname: &'a str,
    /// The boot NIC's static address.
    pub address: Option<String>,
    /// The user data, sealed with the master key.
    pub user_data_sealed: String,
    /// SSH public keys.
    pub ssh_keys: &'a [String],
    /// The erase mode (release).
    pub erase: &'a str,
}

#[derive(sqlx::FromRow)]
struct RunRow {
    id: String,
    machine_id: String,
    purpose: String,
    image_name: String,
    image_sha256: String,
    layout: String,
    disk_serial: String,
    hostname: String,
    address: Option<String>,
    user_data_sealed: String,
    ssh_keys_json: String,
    erase: String,
    state: String,
    step: String,
    progress_pct: i64,
    host_key: String,
    failure: String,
    started_ms: i64,
    finished_ms: Option<i64>,
}

const RUN_COLUMNS: &str = "id, machine_id, purpose, image_name, image_sha256, layout, \
     disk_serial, hostname, address, user_data_sealed, ssh_keys_json, erase, state, step, \
     progress_pct, host_key, failure, started_ms, finished_ms";

impl RunRow {
    fn split(self) -> (RunRecord, String) {
        let ssh_keys = serde_json::from_str(&self.ssh_keys_json).unwrap_or_default();
        (
            RunRecord {
                id: self.id,
                machine_id: self.machine_id,
                purpose: self.purpose,
                image_name: self.image_name,
                image_sha256: self.image_sha256,
                layout: self.layout,
                disk_serial: self.disk_serial,
                hostname: self.hostname,
                address: self.address,
                ssh_keys,
                erase: self.erase,
                state: self.state,
                step: self.step,
                progress_pct: self.progress_pct,
                host_key: self.host_key,
                failure: self.failure,
                started_ms: self.started_ms,
                finished_ms: self.finished_ms,
            },
            self.user_data_sealed,
        )
    }
}

impl Store {
    /// Starts a run: the status change (which must still be allowed) and
    /// the run's row, in one transaction.
    pub async fn start_run(
        &self,
        machine_id: &str,
        transition: Transition<'_>,
        run: NewRun<'_>,
    ) -> Result<(Machine, RunRecord), StoreError> {
        let mut tx = self.begin_write().await?;
        transition_in(&mut tx, machine_id, &transition).await?;
        // A run left running by an earlier status (aborted) ends here.
        sqlx::query(
            "UPDATE deployments SET state = 'failed', failure = 'superseded', finished_ms = $1 \
             WHERE machine_id = $2 AND state = 'running'",
        )
        .bind(now_ms())
        .bind(machine_id)
        .execute(&mut *tx)
        .await?;
        let id = new_id();
        sqlx::query(
            "INSERT INTO deployments (id, machine_id, purpose, image_name, image_sha256, layout, \
             disk_serial, hostname, address, user_data_sealed, ssh_keys_json, erase, state, step, \
             progress_pct, host_key, failure, started_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 'running', '', 0, '', '', $13)",
        )
        .bind(&id)
        .bind(machine_id)
        .bind(run.purpose)
        .bind(run.image.0)
        .bind(run.image.1)
        .bind(run.layout)
        .bind(run.disk_serial)
        .bind(run.hostname)
        .bind(run.address)
        .bind(run.user_data_sealed)
        .bind(serde_json::to_string(run.ssh_keys).unwrap_or_else(|_| "[]".into()))
        .bind(run.erase)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.changes
            .emit(super::Change::Machine(machine_id.to_string()));
        let machine = self.get_machine(machine_id).await?;
        let (record, _) = self
            .current_run(machine_id)
            .await?
            .ok_or_else(|| StoreError::not_found("run", &id))?;
        Ok((machine, record))
    }

    /// The machine's running run, with its sealed user data.
    pub async fn current_run(
        &self,
        machine_id: &str,
    ) -> Result<Option<(RunRecord, String)>, StoreError> {
        let row = sqlx::query_as::<_, RunRow>(&format!(
            "SELECT {RUN_COLUMNS} FROM deployments WHERE machine_id = $1 AND state = 'running' \
             ORDER BY started_ms DESC LIMIT 1"
        ))
        .bind(machine_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(RunRow::split))
    }

    /// Every running run, with its sealed user data (the racks' plans).
    pub async fn running_runs(&self) -> Result<Vec<(RunRecord, String)>, StoreError> {
        let rows = sqlx::query_as::<_, RunRow>(&format!(
            "SELECT {RUN_COLUMNS} FROM deployments WHERE state = 'running' ORDER BY started_ms"
        ))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(RunRow::split).collect())
    }

    /// A machine's runs, newest first.
    pub async fn list_runs(&self, machine_id: &str) -> Result<Vec<RunRecord>, StoreError> {
        self.get_machine(machine_id).await?;
        let rows = sqlx::query_as::<_, RunRow>(&format!(
            "SELECT {RUN_COLUMNS} FROM deployments WHERE machine_id = $1 ORDER BY started_ms DESC"
        ))
        .bind(machine_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|row| row.split().0).collect())
    }

    /// Ends the machine's running run as failed (timeout, abort, power).
    pub async fn fail_run(&self, machine_id: &str, why: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE deployments SET state = 'failed', failure = $1, finished_ms = $2 \
             WHERE machine_id = $3 AND state = 'running'",
        )
        .bind(why)
        .bind(now_ms())
        .bind(machine_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

#[derive(sqlx::FromRow)]
struct RunCheckRow {
    mac: String,
    status: String,
    token_sha256: Option<String>,
}

/// Checks a report against the machine's run: its token, its interface and
/// a status of `statuses`. The status, or why the report is refused.
async fn check_run_in(
    tx: &mut Transaction<'_, Any>,
    machine_id: &str,
    token: &str,
    mac: &str,
    statuses: &[MachineStatus],
) -> Result<Result<MachineStatus, &'static str>, StoreError> {
    let row = sqlx::query_as::<_, RunCheckRow>(
        "SELECT mac, status, token_sha256 FROM machines WHERE id = $1",
    )
    .bind(machine_id)
    .fetch_optional(&mut **tx)
    .await?;
    let Some(row) = row else {
        return Ok(Err("the machine is unknown"));
    };
    let expected = row.token_sha256.unwrap_or_default();
    if expected.is_empty() || expected != token_digest(token) {
        return Ok(Err("the token is not the one issued for this run"));
    }
    if row.mac != mac {
        return Ok(Err("it came from another machine's interface"));
    }
    match MachineStatus::parse(&row.status) {
        Some(status) if statuses.contains(&status) => Ok(Ok(status)),
        _ => Ok(Err("the machine is not deploying or releasing")),
    }
}

async fn refuse_in(
    tx: &mut Transaction<'_, Any>,
    machine_id: &str,
    actor: &str,
    what: &str,
    reason: &str,
) -> Result<ResultsOutcome, StoreError> {
    tracing::warn!(machine = machine_id, reason, what, "run report refused");
    if reason != "the machine is unknown" {
        add_event_in(
            tx,
            machine_id,
            "deploy.refused",
            actor,
            &format!("{what} refused: {reason}"),
        )
        .await?;
    }
    Ok(ResultsOutcome::Refused)
}

/// Ends the running run of `machine_id` inside `tx`.
async fn finish_run_in(
    tx: &mut Transaction<'_, Any>,
    machine_id: &str,
    state: &str,
    failure: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE deployments SET state = $1, failure = $2, finished_ms = $3 \
         WHERE machine_id = $4 AND state = 'running'",
    )
    .bind(state)
    .bind(failure)
    .bind(now_ms())
    .bind(machine_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Fails the run and its status (Failed deployment / Failed releasing).
async fn fail_in(
    tx: &mut Transaction<'_, Any>,
    machine_id: &str,
    status: MachineStatus,
    why: &str,
) -> Result<ResultsOutcome, StoreError> {
    let action = if status == MachineStatus::Releasing {
        Action::ReleaseFailed
    } else {
        Action::DeploymentFailed
    };
    finish_run_in(tx, machine_id, "failed", why).await?;
    transition_in(
        tx,
        machine_id,
        &Transition {
            action,
            actor: "region",
            reason: why,
            deadline_ms: None,
            token: TokenChange::Withdraw,
        },
    )
    .await?;
    Ok(ResultsOutcome::RunFailed {
        machine_id: machine_id.to_string(),
    })
}

const RUN_STATUSES: [MachineStatus; 2] = [MachineStatus::Deploying, MachineStatus::Releasing];

/// Applies a step the installer or eraser reported, inside `tx`.
pub(crate) async fn apply_progress_in(
    tx: &mut Transaction<'_, Any>,
    rack_id: &str,
    progress: &InstallProgress,
) -> Result<ResultsOutcome, StoreError> {
    let machine_id = progress.machine_id.as_str();
    let actor = format!("rack {rack_id}");
    let status = match check_run_in(
        tx,
        machine_id,
        &progress.token,
        &progress.mac.to_string(),
        &RUN_STATUSES,
    )
    .await?
    {
        Ok(status) => status,
        Err(reason) => return refuse_in(tx, machine_id, &actor, "a progress report", reason).await,
    };
    let purpose = if status == MachineStatus::Releasing {
        "release"
    } else {
        "deploy"
    };
    let step: String = clip(&progress.step, 32);
    let detail = clip(&progress.detail, 512);
    let text = match (progress.state.as_str(), detail.is_empty()) {
        ("progress", _) => format!("{detail} %"),
        (state, true) => state.to_string(),
        (state, false) => format!("{state}: {detail}"),
    };
    add_event_in(tx, machine_id, &format!("{purpose}.{step}"), &actor, &text).await?;
    let pct = (step == "image" && progress.state == "progress")
        .then(|| detail.trim().parse::<i64>().ok())
        .flatten();
    sqlx::query(
        "UPDATE deployments SET step = $1, progress_pct = COALESCE($2, progress_pct) \
         WHERE machine_id = $3 AND state = 'running'",
    )
    .bind(&step)
    .bind(pct.map(|p| p.clamp(0, 100)))
    .bind(machine_id)
    .execute(&mut **tx)
    .await?;
    if progress.state == "failed" {
        let why = format!("step {step}: {detail}");
        return fail_in(tx, machine_id, status, &why).await;
    }
    Ok(ResultsOutcome::Progress)
}

/// Applies a deploy or release run's results upload, inside `tx`.
pub(crate) async fn apply_run_results_in(
    tx: &mut Transaction<'_, Any>,
    rack_id: &str,
    results: &CommissioningResults,
) -> Result<ResultsOutcome, StoreError> {
    let machine_id = results.machine_id.as_str();
    let actor = format!("rack {rack_id}");
    let wanted = if results.purpose == "release" {
        MachineStatus::Releasing
    } else {
        MachineStatus::Deploying
    };
    let status = match check_run_in(
        tx,
        machine_id,
        &results.token,
        &results.mac.to_string(),
        &[wanted],
    )
    .await?
    {
        Ok(status) => status,
        Err(reason) => return refuse_in(tx, machine_id, &actor, "results", reason).await,
    };
    let output = |name: &str| {
        results
            .outputs
            .iter()
            .find(|o| o.name == name)
            .map(|o| String::from_utf8_lossy(&o.data).trim().to_string())
    };
    if let Some(failed) = output("failed") {
        let why = clip(&failed, 512);
        add_event_in(
            tx,
            machine_id,
            &format!("{}.failed", results.purpose),
            &actor,
            &why,
        )
        .await?;
        return fail_in(tx, machine_id, status, &why).await;
    }
    if status == MachineStatus::Releasing {
        let log = output("erase.log").unwrap_or_default();
        add_event_in(tx, machine_id, "release.erased", &actor, &clip(&log, 2048)).await?;
        finish_run_in(tx, machine_id, "done", "").await?;
        transition_in(
            tx,
            machine_id,
            &Transition {
                action: Action::ReleasePassed,
                actor: "region",
                reason: "disks erased",
                deadline_ms: None,
                token: TokenChange::Withdraw,
            },
        )
        .await?;
        return Ok(ResultsOutcome::Released {
            machine_id: machine_id.to_string(),
        });
    }
    add_event_in(
        tx,
        machine_id,
        "deploy.installed",
        &actor,
        "the installer finished; the machine reboots into its installed system",
    )
    .await?;
    sqlx::query("UPDATE deployments SET step = 'installed', progress_pct = 100 WHERE machine_id = $1 AND state = 'running'")
        .bind(machine_id)
        .execute(&mut **tx)
        .await?;
    Ok(ResultsOutcome::Installed {
        machine_id: machine_id.to_string(),
    })
}

/// Applies an installed system's first call home, inside `tx`: Deployed.
pub(crate) async fn apply_phone_home_in(
    tx: &mut Transaction<'_, Any>,
    rack_id: &str,
    phone_home: &PhoneHome,
) -> Result<ResultsOutcome, StoreError> {
    let machine_id = phone_home.machine_id.as_str();
    let actor = format!("rack {rack_id}");
    if let Err(reason) = check_run_in(
        tx,
        machine_id,
        &phone_home.token,
        &phone_home.mac.to_string(),
        &[MachineStatus::Deploying],
    )
    .await?
    {
        return refuse_in(tx, machine_id, &actor, "a phone-home", reason).await;
    }
    let host_key = clip(&phone_home.host_key, 1024);
    add_event_in(
        tx,
        machine_id,
        "deploy.phone-home",
        &actor,
        &format!(
            "{} is up (instance {}, host key {})",
            clip(&phone_home.hostname, 64),
            clip(&phone_home.instance_id, 64),
            host_key
        ),
    )
    .await?;
    sqlx::query(
        "UPDATE deployments SET host_key = $1, state = 'done', step = 'phone-home', \
         finished_ms = $2 WHERE machine_id = $3 AND state = 'running'",
    )
    .bind(&host_key)
    .bind(now_ms())
    .bind(machine_id)
    .execute(&mut **tx)
    .await?;
    transition_in(
        tx,
        machine_id,
        &Transition {
            action: Action::DeploymentPassed,
            actor: "region",
            reason: "the installed system called home",
            deadline_ms: None,
            token: TokenChange::Withdraw,
        },
    )
    .await?;
    Ok(ResultsOutcome::Deployed {
        machine_id: machine_id.to_string(),
    })
}

/// At most `max` bytes of `text`, cut on a character boundary.
fn clip(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}
