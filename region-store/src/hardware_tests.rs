//! A commissioning run's plan (the hardware tests and LLDP listening it was
//! asked for), kept on the machine from the Commission transition on, and
//! the judgement of its results against it.

use std::collections::HashMap;

use edgemetal_protocol::{CommissionPlan, HardwareTest};
use edgemetal_region_model::lifecycle::hardware_tests;
use edgemetal_region_model::lifecycle::inventory::Inventory;
use sqlx::{Any, Transaction};

use super::lifecycle::transition_in;
use super::{Machine, Store, StoreError, Transition};

fn plan_of(tests: &str, lldp_secs: i64) -> CommissionPlan {
    CommissionPlan {
        tests: tests.split(',').filter_map(HardwareTest::parse).collect(),
        lldp_secs: lldp_secs.clamp(0, i64::from(u16::MAX)) as u16,
    }
}

fn has_work(plan: &CommissionPlan) -> bool {
    !plan.tests.is_empty() || plan.lldp_secs > 0
}

impl Store {
    /// Starts commissioning: the status change (which must still be
    /// allowed) and the run's plan, in one transaction, so the intent the
    /// rack gets with the new status already carries the plan.
    pub async fn start_commissioning(
        &self,
        machine_id: &str,
        transition: Transition<'_>,
        plan: &CommissionPlan,
    ) -> Result<Machine, StoreError> {
        let mut tx = self.begin_write().await?;
        transition_in(&mut tx, machine_id, &transition).await?;
        let tests: Vec<&str> = plan.tests.iter().map(|t| t.as_str()).collect();
        sqlx::query(
            "UPDATE machines SET commission_tests = $1, commission_lldp_secs = $2 WHERE id = $3",
        )
        .bind(tests.join(","))
        .bind(i64::from(plan.lldp_secs))
        .bind(machine_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.changes
            .emit(super::Change::Machine(machine_id.to_string()));
        self.get_machine(machine_id).await
    }

    /// The plan of the machine's commissioning run, if it asked for more
    /// than the inventory.
    pub async fn commission_plan(
        &self,
        machine_id: &str,
    ) -> Result<Option<CommissionPlan>, StoreError> {
        let row: Option<(String, i64)> = sqlx::query_as(
            "SELECT commission_tests, commission_lldp_secs FROM machines WHERE id = $1",
        )
        .bind(machine_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row
            .map(|(tests, lldp)| plan_of(&tests, lldp))
            .filter(has_work))
    }

    /// Every machine's commissioning plan that asks for more than the
    /// inventory, by machine id.
    pub async fn commission_plans(&self) -> Result<HashMap<String, CommissionPlan>, StoreError> {
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT id, commission_tests, commission_lldp_secs FROM machines \
             WHERE commission_tests <> '' OR commission_lldp_secs > 0",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, tests, lldp)| (id, plan_of(&tests, lldp)))
            .filter(|(_, plan)| has_work(plan))
            .collect())
    }
}

/// Whether the inventory's test results let the machine be Ready, against
/// the tests its run asked for (inside `tx`); `Err` names what did not pass.
pub(crate) async fn judge_in(
    tx: &mut Transaction<'_, Any>,
    machine_id: &str,
    inventory: &Inventory,
) -> Result<Result<(), String>, StoreError> {
    let tests: Option<String> =
        sqlx::query_scalar("SELECT commission_tests FROM machines WHERE id = $1")
            .bind(machine_id)
            .fetch_optional(&mut **tx)
            .await?;
    let requested = plan_of(&tests.unwrap_or_default(), 0).tests;
    Ok(hardware_tests::judge(&requested, &inventory.tests))
}
