//! Hardware tests and LLDP neighbours from a commissioning run, and whether
//! the tests let the machine be Ready.
//!
//! The agent writes two outputs, one tab-separated `key=value` line per item
//! (as `block` and `net`):
//! - `tests`: `name=fio  result=passed|failed|skipped  seconds=N  detail=…`
//! - `lldp`: `name=<interface>  chassis_id=…  system_name=…  port_id=…  port_description=…`
//!
//! Both come from the machine and are untrusted: bounded and never panicking,
//! like the rest of the inventory.

use edgemetal_protocol::HardwareTest;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::inventory::{clean, field, parse_devices, quote, Notes};

/// How a hardware test ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TestOutcome {
    /// It ran and the hardware passed.
    Passed,
    /// It ran and the hardware failed (or the test could not run).
    Failed,
    /// Nothing to test (e.g. a disk without SMART).
    Skipped,
}

impl TestOutcome {
    /// Its name in the API and the agent's output.
    pub fn as_str(self) -> &'static str {
        match self {
            TestOutcome::Passed => "passed",
            TestOutcome::Failed => "failed",
            TestOutcome::Skipped => "skipped",
        }
    }
}

/// One hardware test's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TestResult {
    /// The test, e.g. `fio`.
    pub name: String,
    /// How it ended.
    pub result: TestOutcome,
    /// How long it ran, in seconds.
    pub seconds: Option<u32>,
    /// What it measured or why it failed, e.g. `vda: read 2100 IOPS, write 1800 IOPS`.
    pub detail: Option<String>,
}

/// A neighbour heard over LLDP on one interface: the switch and its port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LldpNeighbour {
    /// The machine's interface, e.g. `eth0`.
    pub interface: String,
    /// The neighbour's chassis id (often its MAC).
    pub chassis_id: Option<String>,
    /// The neighbour's system name, e.g. the switch's host name.
    pub system_name: Option<String>,
    /// The neighbour's port id, e.g. `swp7`.
    pub port_id: Option<String>,
    /// The neighbour's port description.
    pub port_description: Option<String>,
}

/// The `tests` output's results, by name.
pub(super) fn parse_tests(text: &str, notes: &mut Notes) -> Vec<TestResult> {
    parse_devices(text, "tests", notes, |name, line, notes| {
        let said = field(line, "result").map(str::trim);
        let known = [
            TestOutcome::Passed,
            TestOutcome::Failed,
            TestOutcome::Skipped,
        ];
        let result = match known.into_iter().find(|o| Some(o.as_str()) == said) {
            Some(outcome) => outcome,
            None => {
                notes.push(format!(
                    "test {name}: unknown result {}",
                    quote(said.unwrap_or(""))
                ));
                TestOutcome::Failed
            }
        };
        Some(TestResult {
            name,
            result,
            seconds: field(line, "seconds").and_then(|s| s.trim().parse().ok()),
            detail: field(line, "detail").and_then(clean),
        })
    })
}

/// The `lldp` output's neighbours, by interface.
pub(super) fn parse_lldp(text: &str, notes: &mut Notes) -> Vec<LldpNeighbour> {
    parse_devices(text, "lldp", notes, |interface, line, _| {
        Some(LldpNeighbour {
            interface,
            chassis_id: field(line, "chassis_id").and_then(clean),
            system_name: field(line, "system_name").and_then(clean),
            port_id: field(line, "port_id").and_then(clean),
            port_description: field(line, "port_description").and_then(clean),
        })
    })
}

/// Whether the results of the tests that were asked for let the machine be
/// Ready: every requested test must have a result, and none may have
/// failed. `Err` says which did not pass, for the machine's status reason.
pub fn judge(requested: &[HardwareTest], results: &[TestResult]) -> Result<(), String> {
    let mut problems = Vec::new();
    for test in requested {
        match results.iter().find(|r| r.name == test.as_str()) {
            None => problems.push(format!("{}: no result", test.as_str())),
            Some(TestResult {
                result: TestOutcome::Failed,
                detail,
                ..
            }) => problems.push(format!(
                "{}: failed{}",
                test.as_str(),
                detail
                    .as_deref()
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default()
            )),
            Some(_) => {}
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("hardware tests: {}", problems.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn results(text: &str) -> (Vec<TestResult>, Vec<String>) {
        let mut notes = Notes::default();
        let results = parse_tests(text, &mut notes);
        (results, notes.0)
    }

    #[test]
    fn test_lines_parse_into_results_by_name() {
        let (results, notes) = results(
            "name=stress-ng\tresult=passed\tseconds=5\tdetail=1 CPU, 5 s verified\n\
             name=fio\tresult=failed\tseconds=3\tdetail=vda: I/O error\n\
             name=smartctl\tresult=skipped\tdetail=vda: no SMART\n",
        );
        assert!(notes.is_empty(), "{notes:?}");
        let names: Vec<&str> = results.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["fio", "smartctl", "stress-ng"]);
        assert_eq!(results[0].result, TestOutcome::Failed);
        assert_eq!(results[0].seconds, Some(3));
        assert_eq!(results[1].result, TestOutcome::Skipped);
        assert_eq!(results[1].seconds, None);
        assert_eq!(results[2].detail.as_deref(), Some("1 CPU, 5 s verified"));
    }

    #[test]
    fn an_unknown_result_is_a_failure_with_a_note() {
        let (results, notes) = results("name=fio\tresult=great\n");
        assert_eq!(results[0].result, TestOutcome::Failed);
        assert_eq!(notes.len(), 1, "{notes:?}");
    }

    #[test]
    fn judge_needs_every_requested_test_passed_or_skipped() {
        let (results, _) = results(
            "name=smartctl\tresult=skipped\nname=memtester\tresult=passed\n\
             name=fio\tresult=failed\tdetail=vda: I/O error\n",
        );
        assert_eq!(
            judge(&[HardwareTest::Smartctl, HardwareTest::Memtester], &results),
            Ok(())
        );
        assert_eq!(judge(&[], &results), Ok(()));
        assert_eq!(
            judge(&[HardwareTest::Fio, HardwareTest::StressNg], &results),
            Err("hardware tests: fio: failed (vda: I/O error); stress-ng: no result".into())
        );
    }

    #[test]
    fn lldp_lines_give_neighbours_by_interface() {
        let mut notes = Notes::default();
        let neighbours = parse_lldp(
            "name=eth0\tchassis_id=02:00:00:00:00:01\tsystem_name=hil-switch\tport_id=swp7\tport_description=bench port 7\n\
             garbage without a name\n",
            &mut notes,
        );
        assert_eq!(neighbours.len(), 1);
        assert_eq!(neighbours[0].interface, "eth0");
        assert_eq!(neighbours[0].system_name.as_deref(), Some("hil-switch"));
        assert_eq!(neighbours[0].port_id.as_deref(), Some("swp7"));
        assert_eq!(notes.0.len(), 1, "{:?}", notes.0);
    }
}
