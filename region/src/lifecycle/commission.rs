//! What `POST /machines/{id}/actions/commission` may ask for besides the
//! inventory: hardware tests and LLDP listening, checked in full before any
//! status changes. The run's plan travels to the rack with its intent.

use axum::http::StatusCode;
use edgemetal_protocol::{CommissionPlan, HardwareTest};
use serde::Deserialize;
use utoipa::ToSchema;

use super::deploy::Refusal;

/// The longest LLDP listen asked for (switches send every 30 s by default).
pub const MAX_LLDP_SECS: u16 = 300;

/// `POST /machines/{id}/actions/commission`: an optional body.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CommissionRequest {
    /// Hardware tests to run, from `smartctl`, `memtester`, `fio` (writes
    /// to the disks) and `stress-ng`. A failed one fails commissioning.
    #[serde(default)]
    pub tests: Option<Vec<String>>,
    /// Seconds to listen for LLDP neighbours (0, the default: not at all;
    /// at most 300).
    #[serde(default)]
    pub lldp_secs: Option<u16>,
    /// Why, for the event log.
    #[serde(default)]
    pub reason: Option<String>,
}

impl CommissionRequest {
    /// The run's plan, or why the request is refused.
    pub fn plan(&self) -> Result<CommissionPlan, Refusal> {
        let invalid = |message: String| Refusal {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "invalid",
            message,
        };
        let mut tests = Vec::new();
        for name in self.tests.iter().flatten() {
            let test = HardwareTest::parse(name).ok_or_else(|| {
                let known: Vec<&str> = HardwareTest::ALL.iter().map(|t| t.as_str()).collect();
                invalid(format!(
                    "unknown hardware test {name:?}: use {}",
                    known.join(", ")
                ))
            })?;
            if !tests.contains(&test) {
                tests.push(test);
            }
        }
        tests.sort();
        let lldp_secs = self.lldp_secs.unwrap_or(0);
        if lldp_secs > MAX_LLDP_SECS {
            return Err(invalid(format!(
                "lldp_secs {lldp_secs}: at most {MAX_LLDP_SECS}"
            )));
        }
        Ok(CommissionPlan { tests, lldp_secs })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(tests: &[&str], lldp_secs: Option<u16>) -> CommissionRequest {
        CommissionRequest {
            tests: Some(tests.iter().map(|t| t.to_string()).collect()),
            lldp_secs,
            reason: None,
        }
    }

    #[test]
    fn tests_are_known_deduplicated_and_in_running_order() {
        let plan = request(&["stress-ng", "fio", "smartctl", "fio"], Some(20))
            .plan()
            .unwrap();
        assert_eq!(
            plan.tests,
            [
                HardwareTest::Smartctl,
                HardwareTest::Fio,
                HardwareTest::StressNg
            ]
        );
        assert_eq!(plan.lldp_secs, 20);
        assert_eq!(CommissionRequest::default().plan().unwrap().tests, []);
    }

    #[test]
    fn unknown_tests_and_long_listens_are_refused() {
        let refusal = request(&["badblocks"], None).plan().unwrap_err();
        assert_eq!(refusal.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(refusal.message.contains("badblocks"), "{}", refusal.message);
        assert!(request(&[], Some(301)).plan().is_err());
    }
}
