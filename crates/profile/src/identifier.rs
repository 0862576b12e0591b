//! The identifier a profile is known by elsewhere (the Braze export's `external_id`).

use crate::plans::Plans;
use crate::state::ProfileState;

/// The text of a profile's identifier field: a string or number as is; of a list (a field
/// collecting several values), the most recent element.
pub fn identifier(state: &ProfileState, plans: &Plans, field: &str) -> Option<String> {
    let value = match state.fields.get(field) {
        Some(f) => f.value(Some(plans.spec(field))).to_json(),
        None => {
            let values = state.identities.get(field)?;
            return values.iter().next_back().cloned();
        }
    };
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    match &value {
        serde_json::Value::Array(items) => items.iter().rev().find_map(text),
        other => text(other),
    }
}
