//! Who may do what: the role each `/api/v1` operation needs and the action
//! name the audit log records for it, in one table to review.
//!
//! - `read_only`: reads (GET) only;
//! - `operator`: also writes subnets, ranges and machines;
//! - `admin`: everything, including API keys and the audit log.
//!
//! The audit log is admin-only: it names keys and the addresses they are used
//! from, which is what an attacker holding a lesser key would like to know.
//!
//! Anything not in the table needs `admin` when it is not a read, so a route
//! added without a rule is closed rather than open (a unit test also checks
//! that every documented operation has its rule).

use axum::http::Method;

use crate::store::ApiKeyRole;

/// What an operation needs and how the audit log names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// The least role allowed.
    pub role: ApiKeyRole,
    /// Audit action name, e.g. `subnet.create`.
    pub action: &'static str,
}

struct Rule {
    method: Method,
    /// Path template under `/api/v1`, as routed and documented.
    path: &'static str,
    policy: Policy,
}

const fn rule(method: Method, path: &'static str, role: ApiKeyRole, action: &'static str) -> Rule {
    Rule {
        method,
        path,
        policy: Policy { role, action },
    }
}

use ApiKeyRole::{Admin, Operator, ReadOnly};

const RULES: &[Rule] = &[
    rule(Method::GET, "/openapi.json", ReadOnly, "openapi.get"),
    rule(Method::GET, "/racks", ReadOnly, "rack.list"),
    rule(Method::GET, "/racks/{id}", ReadOnly, "rack.get"),
    rule(Method::GET, "/subnets", ReadOnly, "subnet.list"),
    rule(Method::POST, "/subnets", Operator, "subnet.create"),
    rule(Method::GET, "/subnets/{id}", ReadOnly, "subnet.get"),
    rule(Method::PUT, "/subnets/{id}", Operator, "subnet.update"),
    rule(Method::PATCH, "/subnets/{id}", Operator, "subnet.patch"),
    rule(Method::DELETE, "/subnets/{id}", Operator, "subnet.delete"),
    rule(Method::GET, "/subnets/{id}/ranges", ReadOnly, "range.list"),
    rule(
        Method::POST,
        "/subnets/{id}/ranges",
        Operator,
        "range.create",
    ),
    rule(
        Method::GET,
        "/subnets/{id}/ranges/{range_id}",
        ReadOnly,
        "range.get",
    ),
    rule(
        Method::PUT,
        "/subnets/{id}/ranges/{range_id}",
        Operator,
        "range.update",
    ),
    rule(
        Method::DELETE,
        "/subnets/{id}/ranges/{range_id}",
        Operator,
        "range.delete",
    ),
    rule(
        Method::GET,
        "/subnets/{id}/reservations",
        ReadOnly,
        "reservation.list",
    ),
    rule(
        Method::POST,
        "/subnets/{id}/reservations",
        Operator,
        "reservation.create",
    ),
    rule(
        Method::GET,
        "/subnets/{id}/reservations/{reservation_id}",
        ReadOnly,
        "reservation.get",
    ),
    rule(
        Method::DELETE,
        "/subnets/{id}/reservations/{reservation_id}",
        Operator,
        "reservation.delete",
    ),
    rule(
        Method::PUT,
        "/machines/{id}/power-settings",
        Operator,
        "machine.power_settings",
    ),
    rule(
        Method::GET,
        "/machines/{id}/power",
        ReadOnly,
        "machine.power_get",
    ),
    rule(
        Method::POST,
        "/machines/{id}/power/{action}",
        Operator,
        "machine.power",
    ),
    rule(
        Method::PUT,
        "/machines/{id}/boot-device",
        Operator,
        "machine.boot_device",
    ),
    rule(
        Method::GET,
        "/machines/{id}/boot-settings",
        ReadOnly,
        "machine.boot_settings_get",
    ),
    rule(
        Method::PUT,
        "/machines/{id}/boot-settings",
        Operator,
        "machine.boot_settings",
    ),
    rule(
        Method::GET,
        "/machines/{id}/events",
        ReadOnly,
        "machine.events",
    ),
    rule(
        Method::POST,
        "/machines/{id}/actions/{action}",
        Operator,
        "machine.action",
    ),
    rule(
        Method::GET,
        "/machines/{id}/commissioning-results",
        ReadOnly,
        "machine.commissioning_results",
    ),
    rule(
        Method::GET,
        "/machines/{id}/deployments",
        ReadOnly,
        "machine.deployments",
    ),
    rule(Method::GET, "/machines/{id}/logs", ReadOnly, "machine.logs"),
    rule(Method::GET, "/domains", ReadOnly, "domain.list"),
    rule(Method::POST, "/domains", Operator, "domain.create"),
    rule(Method::GET, "/domains/{id}", ReadOnly, "domain.get"),
    rule(Method::DELETE, "/domains/{id}", Operator, "domain.delete"),
    rule(
        Method::GET,
        "/domains/{id}/records",
        ReadOnly,
        "record.list",
    ),
    rule(
        Method::POST,
        "/domains/{id}/records",
        Operator,
        "record.create",
    ),
    rule(
        Method::GET,
        "/domains/{id}/records/{record_id}",
        ReadOnly,
        "record.get",
    ),
    rule(
        Method::DELETE,
        "/domains/{id}/records/{record_id}",
        Operator,
        "record.delete",
    ),
    rule(
        Method::GET,
        "/boot-resources",
        ReadOnly,
        "boot_resource.list",
    ),
    rule(
        Method::POST,
        "/boot-resources",
        Operator,
        "boot_resource.upload",
    ),
    rule(
        Method::GET,
        "/boot-resources/{id}",
        ReadOnly,
        "boot_resource.get",
    ),
    rule(Method::GET, "/os-images", ReadOnly, "os_image.list"),
    rule(
        Method::DELETE,
        "/boot-resources/{id}",
        Operator,
        "boot_resource.delete",
    ),
    rule(Method::GET, "/machines", ReadOnly, "machine.list"),
    rule(Method::POST, "/machines", Operator, "machine.create"),
    rule(Method::GET, "/machines/{id}", ReadOnly, "machine.get"),
    rule(Method::DELETE, "/machines/{id}", Operator, "machine.delete"),
    rule(Method::GET, "/api-keys", Admin, "api_key.list"),
    rule(Method::POST, "/api-keys", Admin, "api_key.create"),
    rule(Method::GET, "/api-keys/{id}", Admin, "api_key.get"),
    rule(Method::DELETE, "/api-keys/{id}", Admin, "api_key.revoke"),
    rule(Method::GET, "/audit", Admin, "audit.list"),
    rule(Method::GET, "/leases", ReadOnly, "lease.list"),
    rule(
        Method::GET,
        "/enrolment-tokens",
        Admin,
        "enrolment_token.list",
    ),
    rule(
        Method::POST,
        "/enrolment-tokens",
        Admin,
        "enrolment_token.create",
    ),
    rule(Method::GET, "/rack-identities", Admin, "rack_identity.list"),
    rule(Method::POST, "/racks/{id}/revoke", Admin, "rack.revoke"),
    rule(
        Method::POST,
        "/racks/{id}/rotate-key",
        Admin,
        "rack.rotate_key",
    ),
];

/// Whether a request can change state (and so is audited).
pub fn is_mutating(method: &Method) -> bool {
    [Method::POST, Method::PUT, Method::PATCH, Method::DELETE].contains(method)
}

/// Whether `path` (under `/api/v1`) fits `template`, where `{name}` stands
/// for one non-empty segment, as in the router.
fn fits(template: &str, path: &str) -> bool {
    let mut template = template.split('/');
    let mut path = path.split('/');
    loop {
        match (template.next(), path.next()) {
            (None, None) => return true,
            (Some(t), Some(p)) => {
                let ok = if t.starts_with('{') && t.ends_with('}') {
                    !p.is_empty()
                } else {
                    t == p
                };
                if !ok {
                    return false;
                }
            }
            _ => return false,
        }
    }
}

fn find(method: &Method, path: &str) -> Option<Policy> {
    // HEAD is answered by the GET handler, so it needs what GET needs.
    let method = if method == Method::HEAD {
        &Method::GET
    } else {
        method
    };
    RULES
        .iter()
        .find(|rule| rule.method == method && fits(rule.path, path))
        .map(|rule| rule.policy)
}

/// The policy for a request to `path` (under `/api/v1`, no query string).
pub fn lookup(method: &Method, path: &str) -> Policy {
    find(method, path).unwrap_or(if is_mutating(method) {
        Policy {
            role: Admin,
            action: "unknown",
        }
    } else {
        Policy {
            role: ReadOnly,
            action: "unknown",
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn documented_operations() -> Vec<(Method, String)> {
        let doc = crate::api::openapi();
        let mut operations = Vec::new();
        for (path, item) in &doc.paths.paths {
            let path = path
                .strip_prefix("/api/v1")
                .expect("paths are under /api/v1");
            for (method, operation) in [
                (Method::GET, &item.get),
                (Method::POST, &item.post),
                (Method::PUT, &item.put),
                (Method::PATCH, &item.patch),
                (Method::DELETE, &item.delete),
            ] {
                if operation.is_some() {
                    operations.push((method, path.to_string()));
                }
            }
        }
        operations
    }

    #[test]
    fn every_documented_operation_has_its_own_rule() {
        let operations = documented_operations();
        assert!(operations.len() >= 20, "{operations:?}");
        for (method, template) in &operations {
            let rule = RULES
                .iter()
                .find(|r| r.method == method && r.path == template)
                .unwrap_or_else(|| panic!("no rule for {method} {template}"));
            // A concrete path finds that same rule through the matcher.
            let concrete = template
                .replace("{id}", "some-id")
                .replace("{range_id}", "r1");
            assert_eq!(
                lookup(method, &concrete),
                rule.policy,
                "{method} {concrete}"
            );
        }
        // And every rule (but the undocumented document itself) is documented.
        for rule in RULES.iter().filter(|r| r.path != "/openapi.json") {
            assert!(
                operations
                    .iter()
                    .any(|(m, p)| *m == rule.method && p == rule.path),
                "rule for {} {} matches no route",
                rule.method,
                rule.path
            );
        }
    }

    #[test]
    fn read_only_reads_operator_writes_config_admin_keeps_the_keys() {
        for rule in RULES {
            if rule.method != Method::GET {
                assert!(
                    rule.policy.role >= Operator,
                    "{} {}",
                    rule.method,
                    rule.path
                );
            }
            let config = ["/subnets", "/machines", "/boot-resources", "/domains"]
                .iter()
                .any(|p| rule.path.starts_with(p));
            if !config {
                assert!(
                    rule.policy.role == Admin || rule.method == Method::GET,
                    "only configuration writes are open to operators: {} {}",
                    rule.method,
                    rule.path
                );
            }
            if rule.path.starts_with("/api-keys") || rule.path == "/audit" {
                assert_eq!(rule.policy.role, Admin, "{} {}", rule.method, rule.path);
            }
        }
        assert_eq!(lookup(&Method::GET, "/subnets").role, ReadOnly);
        assert_eq!(lookup(&Method::HEAD, "/subnets").role, ReadOnly);
        assert_eq!(lookup(&Method::POST, "/subnets/x/ranges").role, Operator);
        assert_eq!(lookup(&Method::DELETE, "/api-keys/abc").role, Admin);
    }

    #[test]
    fn unknown_operations_are_closed() {
        let unknown = lookup(&Method::POST, "/racks/r1/enrol");
        assert_eq!(unknown.role, Admin);
        assert_eq!(unknown.action, "unknown");
        assert_eq!(lookup(&Method::PATCH, "/racks/x").role, Admin);
        assert_eq!(lookup(&Method::DELETE, "/subnets/").role, Admin, "empty id");
        assert_eq!(lookup(&Method::DELETE, "/subnets//ranges/x").role, Admin);
        assert_eq!(lookup(&Method::GET, "/nothing").role, ReadOnly);
    }

    #[test]
    fn templates_match_whole_segments() {
        assert!(fits("/subnets/{id}", "/subnets/abc"));
        assert!(!fits("/subnets/{id}", "/subnets/abc/ranges"));
        assert!(!fits("/subnets/{id}", "/subnets"));
        assert!(!fits("/subnets", "/subnetsx"));
        assert!(fits("/audit", "/audit"));
    }
}
