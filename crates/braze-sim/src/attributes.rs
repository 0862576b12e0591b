//! Attribute semantics of `/users/track` (docs/braze.md §1.4) and their data-point cost (§3).
//!
//! One function per shape of value: set, `null`, `inc`, simple-array `add`/`remove`, arrays of
//! objects (`$add`/`$remove`/`$update`), nested objects (replace or `_merge_objects`), `$time`.
//! Each returns the number of data points the update costs; 0 for the non-billable fields.

use serde_json::{Map, Value};

/// Keys of an attributes object that select the user or steer the update, never stored.
pub const CONTROL_KEYS: &[&str] = &[
    "external_id",
    "user_alias",
    "braze_id",
    "_update_existing_only",
    "_merge_objects",
    "push_token_import",
];

/// Profile data Braze does not bill for (docs/braze.md §3).
const NON_BILLABLE: &[&str] = &[
    "country",
    "language",
    "email_subscribe",
    "push_subscribe",
    "subscription_groups",
    "push_tokens",
];

/// Standard profile fields (docs/braze.md §1.4); every other key is a custom attribute.
pub const STANDARD_FIELDS: &[&str] = &[
    "first_name",
    "last_name",
    "email",
    "phone",
    "home_city",
    "country",
    "language",
    "dob",
    "gender",
    "time_zone",
    "email_subscribe",
    "push_subscribe",
    "subscription_groups",
    "current_location",
    "date_of_first_session",
    "date_of_last_session",
    "marked_email_as_spam_at",
    "email_open_tracking_disabled",
    "email_click_tracking_disabled",
    "push_tokens",
    "facebook",
    "twitter",
    "image_url",
];

/// Strings longer than this are accepted but do not update the attribute (docs/braze.md §1.4).
pub const MAX_STRING_CHARS: usize = 255;

/// What applying one attribute did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Applied {
    pub data_points: u64,
    /// The attribute was accepted but not changed (too long, over a limit, badly formed
    /// nested value): Braze answers 201 and silently leaves the profile as it was.
    pub ignored: bool,
}

/// A per-object error: the `type` text of an `errors[]` item.
pub type ObjectError = String;

/// Checks the standard fields whose values Braze validates at request time; these make the
/// whole object invalid (an `errors[]` item).
pub fn validate(key: &str, value: &Value) -> Result<(), ObjectError> {
    match key {
        "email" => match value {
            Value::Null => Ok(()),
            Value::String(s) if is_email(s) => Ok(()),
            _ => Err("The value provided for the 'email' field is not a valid email.".into()),
        },
        "gender" => match value {
            Value::Null => Ok(()),
            Value::String(s) if ["M", "F", "O", "N", "P"].contains(&s.as_str()) => Ok(()),
            _ => Err("'gender' is not valid".into()),
        },
        "email_subscribe" | "push_subscribe" => match value {
            Value::String(s)
                if ["opted_in", "subscribed", "unsubscribed"].contains(&s.as_str()) =>
            {
                Ok(())
            }
            _ => Err(format!("'{key}' is not valid")),
        },
        _ if key.is_empty() || key.chars().count() > MAX_STRING_CHARS || key.starts_with('$') => {
            Err(format!("'{key}' is not a valid custom attribute name"))
        }
        _ => Ok(()),
    }
}

fn is_email(s: &str) -> bool {
    match s.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !s.chars().any(char::is_whitespace)
        }
        None => false,
    }
}

fn billable(key: &str) -> u64 {
    u64::from(!NON_BILLABLE.contains(&key))
}

/// Applies `value` to `attrs[key]`. `array_cap` is the simple-array length cap (oldest values
/// dropped past it).
pub fn apply(
    attrs: &mut Map<String, Value>,
    key: &str,
    value: &Value,
    merge_objects: bool,
    array_cap: usize,
) -> Applied {
    let cost = billable(key);
    match value {
        Value::Null => {
            attrs.remove(key);
            Applied {
                data_points: cost,
                ignored: false,
            }
        }
        Value::String(s) if s.chars().count() > MAX_STRING_CHARS => ignored(),
        Value::Array(items) => set_array(attrs, key, items, array_cap, cost),
        Value::Object(ops) => apply_object(attrs, key, ops, merge_objects, array_cap, cost),
        scalar => {
            attrs.insert(key.to_string(), scalar.clone());
            Applied {
                data_points: cost,
                ignored: false,
            }
        }
    }
}

fn ignored() -> Applied {
    Applied {
        data_points: 0,
        ignored: true,
    }
}

fn set_array(
    attrs: &mut Map<String, Value>,
    key: &str,
    items: &[Value],
    array_cap: usize,
    cost: u64,
) -> Applied {
    if items.iter().all(Value::is_object) && !items.is_empty() {
        // An array of objects: one point per property of each object (docs/braze.md §3).
        if !items.iter().all(nested_is_valid) {
            return ignored();
        }
        let points = items
            .iter()
            .map(|o| o.as_object().map_or(0, |m| m.len() as u64))
            .sum::<u64>()
            * cost;
        attrs.insert(key.to_string(), Value::Array(items.to_vec()));
        return Applied {
            data_points: points,
            ignored: false,
        };
    }
    if items.iter().any(|v| {
        v.as_str()
            .is_some_and(|s| s.chars().count() > MAX_STRING_CHARS)
    }) {
        return ignored();
    }
    let mut unique: Vec<Value> = Vec::with_capacity(items.len());
    for item in items {
        push_unique(&mut unique, item.clone());
    }
    truncate_oldest(&mut unique, array_cap);
    attrs.insert(key.to_string(), Value::Array(unique));
    // "If you set the whole array at once, it will count as a single data point."
    Applied {
        data_points: cost,
        ignored: false,
    }
}

/// Arrays hold unique values; adding one already present moves it to the end.
fn push_unique(list: &mut Vec<Value>, item: Value) {
    list.retain(|existing| existing != &item);
    list.push(item);
}

fn truncate_oldest(list: &mut Vec<Value>, cap: usize) {
    if list.len() > cap {
        let excess = list.len() - cap;
        list.drain(..excess);
    }
}

fn apply_object(
    attrs: &mut Map<String, Value>,
    key: &str,
    ops: &Map<String, Value>,
    merge_objects: bool,
    array_cap: usize,
    cost: u64,
) -> Applied {
    let keys: Vec<&str> = ops.keys().map(String::as_str).collect();
    if keys == ["inc"] {
        return increment(attrs, key, &ops["inc"], cost);
    }
    if keys == ["$time"] {
        return match ops["$time"].as_str().and_then(parse_time) {
            Some(t) => {
                attrs.insert(key.to_string(), Value::String(t));
                Applied {
                    data_points: cost,
                    ignored: false,
                }
            }
            None => ignored(),
        };
    }
    if !keys.is_empty() && keys.iter().all(|k| *k == "add" || *k == "remove") {
        return simple_array_ops(attrs, key, ops, array_cap, cost);
    }
    if !keys.is_empty() && keys.iter().all(|k| k.starts_with('$')) {
        return object_array_ops(attrs, key, ops, merge_objects, cost);
    }
    nested_object(attrs, key, ops, merge_objects, cost)
}

fn increment(attrs: &mut Map<String, Value>, key: &str, by: &Value, cost: u64) -> Applied {
    let Some(by) = by.as_i64() else {
        return ignored();
    };
    let current = attrs.get(key).and_then(Value::as_i64).unwrap_or(0);
    attrs.insert(key.to_string(), Value::from(current.saturating_add(by)));
    Applied {
        data_points: cost,
        ignored: false,
    }
}

fn simple_array_ops(
    attrs: &mut Map<String, Value>,
    key: &str,
    ops: &Map<String, Value>,
    array_cap: usize,
    cost: u64,
) -> Applied {
    let add = ops.get("add").map(Value::as_array);
    let remove = ops.get("remove").map(Value::as_array);
    let (Some(add), Some(remove)) = (
        add.unwrap_or(Some(&Vec::new())).cloned(),
        remove.unwrap_or(Some(&Vec::new())).cloned(),
    ) else {
        return ignored();
    };
    if add.iter().chain(&remove).any(|v| {
        v.as_str()
            .is_some_and(|s| s.chars().count() > MAX_STRING_CHARS)
    }) {
        return ignored();
    }
    let mut list = match attrs.get(key) {
        Some(Value::Array(existing)) => existing.clone(),
        _ => Vec::new(),
    };
    for item in &add {
        push_unique(&mut list, item.clone());
    }
    list.retain(|v| !remove.contains(v));
    truncate_oldest(&mut list, array_cap);
    attrs.insert(key.to_string(), Value::Array(list));
    // "If you add values to an array incrementally, it will count as one data point per value."
    Applied {
        data_points: (add.len() + remove.len()) as u64 * cost,
        ignored: false,
    }
}

fn object_array_ops(
    attrs: &mut Map<String, Value>,
    key: &str,
    ops: &Map<String, Value>,
    merge_objects: bool,
    cost: u64,
) -> Applied {
    let mut list = match attrs.get(key) {
        Some(Value::Array(existing)) => existing.clone(),
        _ => Vec::new(),
    };
    let mut points = 0u64;
    for (op, arg) in ops {
        let Some(items) = arg.as_array() else {
            return ignored();
        };
        match op.as_str() {
            "$add" => {
                if !items.iter().all(|o| o.is_object() && nested_is_valid(o)) {
                    return ignored();
                }
                points += items
                    .iter()
                    .map(|o| o.as_object().map_or(0, |m| m.len() as u64))
                    .sum::<u64>();
                list.extend(items.iter().cloned());
            }
            "$remove" => {
                for selector in items {
                    let Some((id_key, id_value)) = identifier_of(selector) else {
                        return ignored();
                    };
                    list.retain(|o| o.get(id_key) != Some(id_value));
                    points += 1;
                }
            }
            "$update" => {
                for update in items {
                    let (Some((id_key, id_value)), Some(Value::Object(new))) =
                        (identifier_of(update), update.get("$new_object"))
                    else {
                        return ignored();
                    };
                    for element in list.iter_mut() {
                        if element.get(id_key) != Some(id_value) {
                            continue;
                        }
                        if let Value::Object(old) = element {
                            if merge_objects {
                                deep_merge(old, new);
                            } else {
                                *old = new.clone();
                            }
                        }
                        points += new.len() as u64;
                    }
                }
            }
            _ => return ignored(),
        }
    }
    attrs.insert(key.to_string(), Value::Array(list));
    Applied {
        data_points: points * cost,
        ignored: false,
    }
}

fn identifier_of(selector: &Value) -> Option<(&str, &Value)> {
    let key = selector.get("$identifier_key")?.as_str()?;
    let value = selector.get("$identifier_value")?;
    Some((key, value))
}

fn nested_object(
    attrs: &mut Map<String, Value>,
    key: &str,
    object: &Map<String, Value>,
    merge_objects: bool,
    cost: u64,
) -> Applied {
    let candidate = Value::Object(object.clone());
    if !nested_is_valid(&candidate) {
        // One invalid nested value drops every nested update of this attribute (docs/braze.md §1.4).
        return ignored();
    }
    let resolved = resolve_times(candidate);
    let points = leaf_count(&resolved) * cost;
    match (attrs.get_mut(key), resolved) {
        (Some(Value::Object(old)), Value::Object(new)) if merge_objects => deep_merge(old, &new),
        (_, new) => {
            attrs.insert(key.to_string(), new);
        }
    }
    Applied {
        data_points: points,
        ignored: false,
    }
}

/// Nested keys: no `.` or `$` (except a `{"$time": ..}` value), no spaces, at most 255
/// characters; no nulls, no malformed `$time`.
fn nested_is_valid(value: &Value) -> bool {
    match value {
        Value::Object(map) => {
            if map.len() == 1
                && let Some(t) = map.get("$time")
            {
                return t.as_str().and_then(parse_time).is_some();
            }
            map.iter().all(|(k, v)| {
                !k.is_empty()
                    && k.chars().count() <= MAX_STRING_CHARS
                    && !k.contains(['.', '$', ' '])
                    && !v.is_null()
                    && nested_is_valid(v)
            })
        }
        Value::Array(items) => items.iter().all(nested_is_valid),
        Value::String(s) => s.chars().count() <= MAX_STRING_CHARS,
        Value::Null => false,
        _ => true,
    }
}

fn resolve_times(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            if map.len() == 1
                && let Some(t) = map
                    .get("$time")
                    .and_then(Value::as_str)
                    .and_then(parse_time)
            {
                return Value::String(t);
            }
            Value::Object(
                map.into_iter()
                    .map(|(k, v)| (k, resolve_times(v)))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.into_iter().map(resolve_times).collect()),
        other => other,
    }
}

fn leaf_count(value: &Value) -> u64 {
    match value {
        Value::Object(map) => map.values().map(leaf_count).sum::<u64>().max(1),
        _ => 1,
    }
}

fn deep_merge(old: &mut Map<String, Value>, new: &Map<String, Value>) {
    for (k, v) in new {
        match (old.get_mut(k), v) {
            (Some(Value::Object(o)), Value::Object(n)) => deep_merge(o, n),
            _ => {
                old.insert(k.clone(), v.clone());
            }
        }
    }
}

/// The time formats docs/braze.md lists (§1.4); the result is RFC 3339 in UTC. A time without a
/// zone is UTC.
pub fn parse_time(text: &str) -> Option<String> {
    let text = text.trim();
    if let Ok(ts) = text.parse::<jiff::Timestamp>() {
        return Some(ts.to_string());
    }
    // yyyy-MM-ddTHH:mm:ss:SSSZ (a colon before the milliseconds)
    if let Some((head, tail)) = text.rsplit_once(':')
        && tail.len() >= 4
        && tail[..3].bytes().all(|b| b.is_ascii_digit())
    {
        let candidate = format!("{head}.{tail}");
        if let Ok(ts) = candidate.parse::<jiff::Timestamp>() {
            return Some(ts.to_string());
        }
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d",
        "%m/%d/%Y",
    ] {
        let parsed = if format.contains("%H") {
            jiff::civil::DateTime::strptime(format, text).ok()
        } else {
            jiff::civil::Date::strptime(format, text)
                .ok()
                .map(|d| d.to_datetime(jiff::civil::Time::midnight()))
        };
        if let Some(dt) = parsed
            && let Ok(ts) = jiff::tz::TimeZone::UTC.to_timestamp(dt)
        {
            return Some(ts.to_string());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(attrs: &mut Map<String, Value>, key: &str, value: Value) -> Applied {
        apply(attrs, key, &value, false, 500)
    }

    #[test]
    fn arrays_are_unique_add_moves_to_the_end_and_costs_per_value() {
        let mut a = Map::new();
        assert_eq!(
            run(
                &mut a,
                "food",
                json!(["hotdog", "hotdog", "hotdog", "pizza"])
            )
            .data_points,
            1
        );
        assert_eq!(a["food"], json!(["hotdog", "pizza"]));
        let applied = run(
            &mut a,
            "food",
            json!({"add": ["hotdog", "taco"], "remove": ["pizza"]}),
        );
        assert_eq!(applied.data_points, 3);
        assert_eq!(a["food"], json!(["hotdog", "taco"]));
    }

    #[test]
    fn the_array_cap_drops_the_oldest() {
        let mut a = Map::new();
        for i in 0..30 {
            apply(&mut a, "seen", &json!({"add": [i]}), false, 25);
        }
        let list = a["seen"].as_array().expect("array");
        assert_eq!(list.len(), 25);
        assert_eq!(list[0], json!(5));
    }

    #[test]
    fn null_removes_inc_adds_and_non_billable_fields_are_free() {
        let mut a = Map::new();
        assert_eq!(run(&mut a, "visits", json!({"inc": 5})).data_points, 1);
        run(&mut a, "visits", json!({"inc": -2}));
        assert_eq!(a["visits"], json!(3));
        assert_eq!(run(&mut a, "visits", Value::Null).data_points, 1);
        assert!(!a.contains_key("visits"));
        assert_eq!(run(&mut a, "country", json!("AU")).data_points, 0);
    }

    #[test]
    fn long_strings_are_accepted_but_ignored() {
        let mut a = Map::new();
        let applied = run(&mut a, "bio2", json!("x".repeat(256)));
        assert!(applied.ignored);
        assert!(!a.contains_key("bio2"));
    }

    #[test]
    fn nested_objects_replace_or_merge_and_bad_times_drop_the_update() {
        let mut a = Map::new();
        run(
            &mut a,
            "car",
            json!({"make": "VW", "model": {"name": "Golf", "year": 2020}}),
        );
        apply(&mut a, "car", &json!({"model": {"year": 2021}}), true, 500);
        assert_eq!(
            a["car"],
            json!({"make": "VW", "model": {"name": "Golf", "year": 2021}})
        );
        run(&mut a, "car", json!({"color": "red"}));
        assert_eq!(a["car"], json!({"color": "red"}));
        let bad = run(&mut a, "car", json!({"bought": {"$time": "yesterday-ish"}}));
        assert!(bad.ignored);
        assert_eq!(a["car"], json!({"color": "red"}));
    }

    #[test]
    fn arrays_of_objects_add_remove_update() {
        let mut a = Map::new();
        let applied = run(
            &mut a,
            "pets",
            json!({"$add": [{"id": 1, "name": "Rex"}, {"id": 2, "name": "Tom"}]}),
        );
        assert_eq!(applied.data_points, 4);
        apply(
            &mut a,
            "pets",
            &json!({"$update": [{"$identifier_key": "id", "$identifier_value": 2,
                                  "$new_object": {"age": 3}}]}),
            true,
            500,
        );
        run(
            &mut a,
            "pets",
            json!({"$remove": [{"$identifier_key": "id", "$identifier_value": 1}]}),
        );
        assert_eq!(a["pets"], json!([{"id": 2, "name": "Tom", "age": 3}]));
    }

    #[test]
    fn times_in_the_contract_formats() {
        for text in [
            "2020-05-28",
            "2020-05-28T10:00:00Z",
            "2020-05-28T10:00:00",
            "2020-05-28 10:00:00",
            "05/28/2020",
            "2020-05-28T10:00:00:000Z",
        ] {
            assert!(parse_time(text).is_some(), "{text}");
        }
        assert!(parse_time("soon").is_none());
    }

    #[test]
    fn validation_of_standard_fields() {
        assert!(validate("email", &json!("a@b.co")).is_ok());
        assert!(validate("email", &json!("nope")).is_err());
        assert!(validate("gender", &json!("male")).is_err());
        assert!(validate("$bad", &json!(1)).is_err());
    }
}
