//! The machine lifecycle as a pure state machine: which action may move a
//! machine from which status to which. Everything with side effects (power,
//! tokens, events) lives in [`super::service`]; this file only decides.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Where a machine is in its life, MAAS's statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MachineStatus {
    /// Known (enlisted or created) but not commissioned.
    New,
    /// Booting the ephemeral image to report its hardware.
    Commissioning,
    /// Commissioned and free to allocate.
    Ready,
    /// Taken by a user, not yet deployed.
    Allocated,
    /// Installing its operating system.
    Deploying,
    /// Running its operating system.
    Deployed,
    /// Being given back.
    Releasing,
    /// Booted into the ephemeral image for repairs.
    RescueMode,
    /// Taken out of service by an operator.
    Broken,
    /// Commissioning failed or timed out.
    FailedCommissioning,
    /// Deployment failed.
    FailedDeployment,
    /// Release failed.
    FailedReleasing,
}

/// Every status, in lifecycle order.
pub const ALL_STATUSES: [MachineStatus; 12] = [
    MachineStatus::New,
    MachineStatus::Commissioning,
    MachineStatus::Ready,
    MachineStatus::Allocated,
    MachineStatus::Deploying,
    MachineStatus::Deployed,
    MachineStatus::Releasing,
    MachineStatus::RescueMode,
    MachineStatus::Broken,
    MachineStatus::FailedCommissioning,
    MachineStatus::FailedDeployment,
    MachineStatus::FailedReleasing,
];

impl MachineStatus {
    /// The stored and API name, e.g. `failed_commissioning`.
    pub fn as_str(self) -> &'static str {
        match self {
            MachineStatus::New => "new",
            MachineStatus::Commissioning => "commissioning",
            MachineStatus::Ready => "ready",
            MachineStatus::Allocated => "allocated",
            MachineStatus::Deploying => "deploying",
            MachineStatus::Deployed => "deployed",
            MachineStatus::Releasing => "releasing",
            MachineStatus::RescueMode => "rescue_mode",
            MachineStatus::Broken => "broken",
            MachineStatus::FailedCommissioning => "failed_commissioning",
            MachineStatus::FailedDeployment => "failed_deployment",
            MachineStatus::FailedReleasing => "failed_releasing",
        }
    }

    /// The name a human reads, e.g. `Failed commissioning`.
    pub fn label(self) -> &'static str {
        match self {
            MachineStatus::New => "New",
            MachineStatus::Commissioning => "Commissioning",
            MachineStatus::Ready => "Ready",
            MachineStatus::Allocated => "Allocated",
            MachineStatus::Deploying => "Deploying",
            MachineStatus::Deployed => "Deployed",
            MachineStatus::Releasing => "Releasing",
            MachineStatus::RescueMode => "Rescue mode",
            MachineStatus::Broken => "Broken",
            MachineStatus::FailedCommissioning => "Failed commissioning",
            MachineStatus::FailedDeployment => "Failed deployment",
            MachineStatus::FailedReleasing => "Failed releasing",
        }
    }

    /// The status with this stored name.
    pub fn parse(name: &str) -> Option<MachineStatus> {
        ALL_STATUSES.into_iter().find(|s| s.as_str() == name)
    }
}

/// What can happen to a machine: an operator's action or an outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Start commissioning.
    Commission,
    /// Stop commissioning or deploying.
    Abort,
    /// The machine's commissioning results arrived.
    CommissioningPassed,
    /// Commissioning failed (e.g. timed out, or the machine could not be powered on).
    CommissioningFailed,
    /// A user takes the machine.
    Allocate,
    /// Install the machine's operating system.
    Deploy,
    /// The operating system is installed and running.
    DeploymentPassed,
    /// Deployment failed.
    DeploymentFailed,
    /// Give the machine back.
    Release,
    /// Release finished.
    ReleasePassed,
    /// Release failed.
    ReleaseFailed,
    /// Take the machine out of service.
    MarkBroken,
    /// Put a broken machine back into service.
    MarkFixed,
    /// Boot the ephemeral image for repairs.
    EnterRescue,
    /// Leave rescue mode.
    ExitRescue,
}

impl Action {
    /// The API name of an operator's action; `None` for outcomes only the region causes.
    pub fn api_name(self) -> Option<&'static str> {
        Some(match self {
            Action::Commission => "commission",
            Action::Abort => "abort",
            Action::Allocate => "allocate",
            Action::Deploy => "deploy",
            Action::Release => "release",
            Action::MarkBroken => "mark-broken",
            Action::MarkFixed => "mark-fixed",
            Action::EnterRescue => "rescue",
            Action::ExitRescue => "exit-rescue",
            _ => return None,
        })
    }

    /// The operator's action with this API name.
    pub fn from_api_name(name: &str) -> Option<Action> {
        OPERATOR_ACTIONS
            .into_iter()
            .find(|a| a.api_name() == Some(name))
    }

    /// A verb for error messages: "cannot commission a Deployed machine".
    fn verb(self) -> &'static str {
        match self {
            Action::Commission => "commission",
            Action::Abort => "abort",
            Action::CommissioningPassed => "complete commissioning of",
            Action::CommissioningFailed => "fail commissioning of",
            Action::Allocate => "allocate",
            Action::Deploy => "deploy",
            Action::DeploymentPassed => "complete deployment of",
            Action::DeploymentFailed => "fail deployment of",
            Action::Release => "release",
            Action::ReleasePassed => "complete release of",
            Action::ReleaseFailed => "fail release of",
            Action::MarkBroken => "mark broken",
            Action::MarkFixed => "mark fixed",
            Action::EnterRescue => "enter rescue mode on",
            Action::ExitRescue => "exit rescue mode on",
        }
    }
}

/// The actions an operator can ask for through the API.
pub const OPERATOR_ACTIONS: [Action; 9] = [
    Action::Commission,
    Action::Abort,
    Action::Allocate,
    Action::Deploy,
    Action::Release,
    Action::MarkBroken,
    Action::MarkFixed,
    Action::EnterRescue,
    Action::ExitRescue,
];

/// What the transition needs to know beyond the current status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Context {
    /// The status before the current one, where aborting or leaving rescue returns to.
    pub before: Option<MachineStatus>,
    /// Whether the machine has commissioning results (a fixed machine is Ready only then).
    pub commissioned: bool,
}

/// An action that the machine's status does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot {verb} a machine that is {from}; {hint}", verb = .action.verb(), from = .from.label())]
pub struct IllegalTransition {
    /// The machine's status.
    pub from: MachineStatus,
    /// What was asked.
    pub action: Action,
    /// What would be allowed instead, for a human.
    pub hint: String,
}

/// The status `action` moves a machine in status `from` to.
pub fn next(
    from: MachineStatus,
    action: Action,
    context: Context,
) -> Result<MachineStatus, IllegalTransition> {
    target(from, action, context).ok_or_else(|| IllegalTransition {
        from,
        action,
        hint: hint(from),
    })
}

/// The transition table.
fn target(from: MachineStatus, action: Action, context: Context) -> Option<MachineStatus> {
    use Action as A;
    use MachineStatus as S;
    let to = match (action, from) {
        (
            A::Commission,
            S::New | S::Ready | S::Broken | S::FailedCommissioning | S::FailedDeployment,
        ) => S::Commissioning,
        (A::Abort, S::Commissioning) => match context.before {
            Some(before) if before != S::Commissioning => before,
            _ => S::New,
        },
        (A::Abort, S::Deploying) => S::Allocated,
        (A::CommissioningPassed, S::Commissioning) => S::Ready,
        (A::CommissioningFailed, S::Commissioning) => S::FailedCommissioning,
        (A::Allocate, S::Ready) => S::Allocated,
        (A::Deploy, S::Allocated) => S::Deploying,
        (A::DeploymentPassed, S::Deploying) => S::Deployed,
        (A::DeploymentFailed, S::Deploying) => S::FailedDeployment,
        // An allocated machine never ran anything of the user's: nothing to wipe.
        (A::Release, S::Allocated) => S::Ready,
        (A::Release, S::Deployed | S::FailedDeployment | S::FailedReleasing) => S::Releasing,
        (A::ReleasePassed, S::Releasing) => S::Ready,
        (A::ReleaseFailed, S::Releasing) => S::FailedReleasing,
        (
            A::MarkBroken,
            S::New
            | S::Ready
            | S::Allocated
            | S::Deployed
            | S::FailedCommissioning
            | S::FailedDeployment
            | S::FailedReleasing,
        ) => S::Broken,
        (A::MarkFixed, S::Broken) if context.commissioned => S::Ready,
        (A::MarkFixed, S::Broken) => S::New,
        (A::EnterRescue, S::Ready | S::Deployed | S::Broken | S::FailedDeployment) => S::RescueMode,
        (A::ExitRescue, S::RescueMode) => match context.before {
            Some(before) if before != S::RescueMode => before,
            _ => S::Ready,
        },
        _ => return None,
    };
    Some(to)
}

/// The operator actions a machine in `status` allows, for error messages.
fn hint(status: MachineStatus) -> String {
    let allowed: Vec<&str> = OPERATOR_ACTIONS
        .into_iter()
        .filter(|action| target(status, *action, Context::default()).is_some())
        .filter_map(Action::api_name)
        .collect();
    if allowed.is_empty() {
        "no operator action is allowed now".to_string()
    } else {
        format!("allowed now: {}", allowed.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Action as A;
    use MachineStatus as S;

    fn go(from: S, action: A) -> Result<S, IllegalTransition> {
        next(from, action, Context::default())
    }

    #[test]
    fn commissioning_runs_from_new_to_ready() {
        assert_eq!(go(S::New, A::Commission), Ok(S::Commissioning));
        assert_eq!(go(S::Commissioning, A::CommissioningPassed), Ok(S::Ready));
        assert_eq!(
            go(S::Commissioning, A::CommissioningFailed),
            Ok(S::FailedCommissioning)
        );
        assert_eq!(
            go(S::FailedCommissioning, A::Commission),
            Ok(S::Commissioning)
        );
    }

    #[test]
    fn abort_returns_to_where_the_machine_was() {
        let ready_before = Context {
            before: Some(S::Ready),
            commissioned: true,
        };
        assert_eq!(next(S::Commissioning, A::Abort, ready_before), Ok(S::Ready));
        assert_eq!(go(S::Commissioning, A::Abort), Ok(S::New));
        assert_eq!(go(S::Deploying, A::Abort), Ok(S::Allocated));
        assert!(go(S::Ready, A::Abort).is_err());
    }

    #[test]
    fn the_deployment_cycle() {
        assert_eq!(go(S::Ready, A::Allocate), Ok(S::Allocated));
        assert_eq!(go(S::Allocated, A::Deploy), Ok(S::Deploying));
        assert!(
            go(S::Ready, A::Deploy).is_err(),
            "deploy needs an allocation"
        );
        assert_eq!(go(S::Deploying, A::DeploymentPassed), Ok(S::Deployed));
        assert_eq!(go(S::Deployed, A::Release), Ok(S::Releasing));
        assert_eq!(go(S::Releasing, A::ReleasePassed), Ok(S::Ready));
        assert_eq!(go(S::Allocated, A::Release), Ok(S::Ready));
        assert_eq!(
            go(S::Deploying, A::DeploymentFailed),
            Ok(S::FailedDeployment)
        );
    }

    #[test]
    fn illegal_transitions_say_what_is_allowed() {
        let error = go(S::Deployed, A::Commission).unwrap_err();
        let message = error.to_string();
        assert_eq!(
            message,
            "cannot commission a machine that is Deployed; allowed now: release, mark-broken, rescue"
        );
        assert!(go(S::New, A::Allocate).is_err());
        assert!(go(S::Commissioning, A::Commission).is_err());
        assert!(go(S::Ready, A::CommissioningPassed).is_err());
        assert!(go(S::Broken, A::MarkBroken).is_err());
    }

    #[test]
    fn a_fixed_machine_is_ready_only_if_it_was_commissioned() {
        assert_eq!(go(S::Broken, A::MarkFixed), Ok(S::New));
        let commissioned = Context {
            before: None,
            commissioned: true,
        };
        assert_eq!(next(S::Broken, A::MarkFixed, commissioned), Ok(S::Ready));
    }

    #[test]
    fn names_round_trip_and_every_status_is_reachable() {
        for status in ALL_STATUSES {
            assert_eq!(MachineStatus::parse(status.as_str()), Some(status));
        }
        for action in OPERATOR_ACTIONS {
            assert_eq!(
                Action::from_api_name(action.api_name().unwrap()),
                Some(action)
            );
        }
        // Every status but New is the target of some transition.
        let all_actions = [
            A::Commission,
            A::Abort,
            A::CommissioningPassed,
            A::CommissioningFailed,
            A::Allocate,
            A::Deploy,
            A::DeploymentPassed,
            A::DeploymentFailed,
            A::Release,
            A::ReleasePassed,
            A::ReleaseFailed,
            A::MarkBroken,
            A::MarkFixed,
            A::EnterRescue,
            A::ExitRescue,
        ];
        for target in ALL_STATUSES.into_iter().filter(|s| *s != S::New) {
            let reachable = ALL_STATUSES
                .into_iter()
                .any(|from| all_actions.iter().any(|a| go(from, *a) == Ok(target)));
            assert!(reachable, "{target:?} is unreachable");
        }
    }
}
