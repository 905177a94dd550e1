//! The broker's topic rules, as Mosquitto's ACL file gives them to an
//! external broker (see [`crate::link::mosquitto::acl_text`]): the region reads and
//! writes every rack's topics; a rack (user = its id) publishes only under
//! its own `up/` and subscribes only inside its own `down/`. Pure, so the
//! embedded broker and the tests check the same rules.

use edgemetal_protocol::topic::TOPIC_ROOT;

use crate::link::keyring::REGION_BROKER_USER;

/// Whether `user` may publish to `topic` (a will's topic included).
pub fn may_publish(user: &str, topic: &str) -> bool {
    if topic.contains(['+', '#']) {
        return false;
    }
    match subtree(user) {
        None => topic.starts_with(&format!("{TOPIC_ROOT}/")),
        Some(rack) => topic
            .strip_prefix(&format!("{TOPIC_ROOT}/{rack}/up/"))
            .is_some_and(|rest| !rest.is_empty()),
    }
}

/// Whether `user` may subscribe to `filter`.
pub fn may_subscribe(user: &str, filter: &str) -> bool {
    match subtree(user) {
        None => {
            filter == format!("{TOPIC_ROOT}/#") || filter.starts_with(&format!("{TOPIC_ROOT}/"))
        }
        Some(rack) => {
            let own = format!("{TOPIC_ROOT}/{rack}/down");
            // Wildcards only below its own subtree: `+` one level up would
            // reach every rack.
            filter == own
                || filter
                    .strip_prefix(&own)
                    .and_then(|rest| rest.strip_prefix('/'))
                    .is_some_and(|rest| !rest.is_empty() && !rest.contains('+'))
        }
    }
}

/// `None` for the region (every rack's topics), else the rack's own id.
fn subtree(user: &str) -> Option<&str> {
    (user != REGION_BROKER_USER).then_some(user)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rack_publishes_only_under_its_own_up_and_reads_only_its_own_down() {
        assert!(may_publish("rack-a", "edgemetal/v1/rack/rack-a/up/status"));
        assert!(!may_publish("rack-a", "edgemetal/v1/rack/rack-b/up/status"));
        assert!(!may_publish(
            "rack-a",
            "edgemetal/v1/rack/rack-a/down/snapshot"
        ));
        assert!(!may_publish("rack-a", "edgemetal/v1/rack/rack-a/up/"));
        assert!(may_subscribe("rack-a", "edgemetal/v1/rack/rack-a/down/#"));
        assert!(!may_subscribe("rack-a", "edgemetal/v1/rack/rack-b/down/#"));
        assert!(!may_subscribe("rack-a", "edgemetal/v1/rack/+/down/#"));
        assert!(!may_subscribe("rack-a", "edgemetal/v1/rack/rack-a/up/#"));
        assert!(!may_subscribe("rack-a", "#"));
        assert!(!may_subscribe(
            "rack-a",
            "edgemetal/v1/rack/rack-a/down-and-more/#"
        ));
        assert!(!may_subscribe(
            "rack-a",
            "$share/g/edgemetal/v1/rack/rack-a/down/#"
        ));
    }

    #[test]
    fn the_region_reaches_every_rack_but_nothing_outside_the_tree() {
        assert!(may_subscribe(
            REGION_BROKER_USER,
            "edgemetal/v1/rack/+/up/#"
        ));
        assert!(may_publish(
            REGION_BROKER_USER,
            "edgemetal/v1/rack/rack-b/down/power"
        ));
        assert!(!may_publish(REGION_BROKER_USER, "elsewhere/topic"));
        assert!(!may_subscribe(REGION_BROKER_USER, "#"));
    }
}
