//! JSON merge patch (RFC 7396): what `PATCH` applies to a resource's
//! settings. Members of the patch replace the target's, `null` removes one,
//! objects merge recursively, anything else (arrays included) replaces.

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::ipam::RuleError;

/// Applies `patch` to `target` in place (RFC 7396, section 2).
pub fn apply(target: &mut Value, patch: &Value) {
    let Value::Object(members) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Default::default());
    }
    let Value::Object(object) = target else {
        unreachable!("made an object above");
    };
    for (name, value) in members {
        if value.is_null() {
            object.remove(name);
        } else {
            apply(object.entry(name.clone()).or_insert(Value::Null), value);
        }
    }
}

/// `settings` with `patch` merged in, read back through the settings' own
/// rules (unknown fields and wrong types refused). The patch must be an
/// object: a bare value would replace every setting, which is what `PUT` is for.
pub fn patched<T: Serialize + DeserializeOwned>(
    settings: &T,
    patch: &Value,
) -> Result<T, RuleError> {
    if !patch.is_object() {
        return Err(RuleError::Invalid(
            "a merge patch is a JSON object of the settings to change".into(),
        ));
    }
    let mut merged = serde_json::to_value(settings)
        .map_err(|error| RuleError::Invalid(format!("cannot represent the settings: {error}")))?;
    apply(&mut merged, patch);
    serde_json::from_value(merged).map_err(|error| RuleError::Invalid(error.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_rfc_examples_hold() {
        // RFC 7396, appendix A (a selection).
        for (target, patch, result) in [
            (json!({"a": "b"}), json!({"a": "c"}), json!({"a": "c"})),
            (
                json!({"a": "b"}),
                json!({"b": "c"}),
                json!({"a": "b", "b": "c"}),
            ),
            (json!({"a": "b"}), json!({"a": null}), json!({})),
            (json!({"a": ["b"]}), json!({"a": "c"}), json!({"a": "c"})),
            (
                json!({"a": {"b": "c"}}),
                json!({"a": {"b": "d", "c": null}}),
                json!({"a": {"b": "d"}}),
            ),
            (
                json!({"a": [{"b": "c"}]}),
                json!({"a": [1]}),
                json!({"a": [1]}),
            ),
            (
                json!({"e": null}),
                json!({"a": 1}),
                json!({"e": null, "a": 1}),
            ),
            (
                json!([1, 2]),
                json!({"a": "b", "c": null}),
                json!({"a": "b"}),
            ),
            (
                json!({}),
                json!({"a": {"bb": {"ccc": null}}}),
                json!({"a": {"bb": {}}}),
            ),
        ] {
            let mut merged = target.clone();
            apply(&mut merged, &patch);
            assert_eq!(merged, result, "{target} + {patch}");
        }
    }

    #[derive(Debug, PartialEq, Serialize, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Settings {
        name: String,
        #[serde(default)]
        gateway: Option<String>,
        #[serde(default)]
        tags: Vec<String>,
    }

    #[test]
    fn patched_settings_keep_what_the_patch_does_not_name() {
        let settings = Settings {
            name: "a".into(),
            gateway: Some("g".into()),
            tags: vec!["x".into()],
        };
        let changed = patched(&settings, &json!({"gateway": null})).unwrap();
        assert_eq!(changed.gateway, None);
        assert_eq!(changed.tags, settings.tags);
        assert!(
            patched(&settings, &json!({"gatway": "h"})).is_err(),
            "typo refused"
        );
        assert!(
            patched(&settings, &json!({"name": 1})).is_err(),
            "wrong type refused"
        );
        assert!(
            patched(&settings, &json!({"name": null})).is_err(),
            "required kept"
        );
        assert!(patched(&settings, &json!([1])).is_err(), "not an object");
    }
}
