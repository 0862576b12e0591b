//! Strings, hashing and encoding.

use base64::Engine;
use sha2::Digest;

use super::{FnCtx, text};
use crate::value::Value;

type Args<'a> = &'a [Value];

fn str_map(a: Args, f: impl Fn(&str) -> String) -> Option<Value> {
    match a.first()? {
        Value::Array(items) => Some(Value::Array(
            items
                .iter()
                .filter_map(text)
                .map(|s| Value::String(f(&s)))
                .collect(),
        )),
        v => text(v).map(|s| Value::String(f(&s))),
    }
}

pub fn contains(a: Args, _: &FnCtx) -> Option<Value> {
    let needle = text(a.get(1)?)?;
    match a.first()? {
        Value::Array(items) => Some(Value::Bool(
            items.iter().any(|i| i.to_text().contains(&needle)),
        )),
        v => Some(Value::Bool(text(v)?.contains(&needle))),
    }
}

pub fn hasprefix(a: Args, _: &FnCtx) -> Option<Value> {
    Some(Value::Bool(
        text(a.first()?)?.starts_with(&text(a.get(1)?)?),
    ))
}

pub fn hassuffix(a: Args, _: &FnCtx) -> Option<Value> {
    Some(Value::Bool(text(a.first()?)?.ends_with(&text(a.get(1)?)?)))
}

/// `join(a, b, ..., sep)`: the last argument is the separator; arrays are spread.
pub fn join(a: Args, _: &FnCtx) -> Option<Value> {
    let (sep, parts) = match a.split_last()? {
        (sep, parts) if !parts.is_empty() => (text(sep)?, parts),
        (only, _) => (String::new(), std::slice::from_ref(only)),
    };
    let mut out: Vec<String> = Vec::new();
    for p in parts {
        match p {
            Value::Array(items) => out.extend(items.iter().filter_map(text)),
            Value::Null => {}
            v => out.extend(text(v)),
        }
    }
    (!out.is_empty()).then(|| Value::String(out.join(&sep)))
}

pub fn len(a: Args, _: &FnCtx) -> Option<Value> {
    Some(Value::Int(match a.first()? {
        Value::Array(items) => items.len() as i64,
        Value::Map(m) => m.len() as i64,
        Value::Null => return None,
        v => v.to_text().chars().count() as i64,
    }))
}

pub fn replace(a: Args, _: &FnCtx) -> Option<Value> {
    let find = text(a.get(1)?)?;
    if find.is_empty() {
        return a.first().cloned();
    }
    let with = match a.get(2) {
        Some(v) => text(v)?,
        None => String::new(),
    };
    str_map(a, |s| s.replace(&find, &with))
}

pub fn split(a: Args, _: &FnCtx) -> Option<Value> {
    let s = text(a.first()?)?;
    let sep = text(a.get(1)?)?;
    if sep.is_empty() {
        return Some(Value::Array(
            s.chars().map(|c| Value::String(c.to_string())).collect(),
        ));
    }
    Some(Value::Array(
        s.split(sep.as_str())
            .map(|p| Value::String(p.to_string()))
            .collect(),
    ))
}

pub fn strip(a: Args, _: &FnCtx) -> Option<Value> {
    str_map(a, |s| s.trim().to_string())
}

pub fn lower(a: Args, _: &FnCtx) -> Option<Value> {
    str_map(a, str::to_lowercase)
}

pub fn upper(a: Args, _: &FnCtx) -> Option<Value> {
    str_map(a, str::to_uppercase)
}

pub fn titlecase(a: Args, _: &FnCtx) -> Option<Value> {
    str_map(a, |s| {
        s.split(' ')
            .map(|w| {
                let mut c = w.chars();
                match c.next() {
                    Some(first) => first
                        .to_uppercase()
                        .chain(c.flat_map(char::to_lowercase))
                        .collect(),
                    None => String::new(),
                }
            })
            .collect::<Vec<String>>()
            .join(" ")
    })
}

/// Character index of a substring, or -1.
pub fn index(a: Args, _: &FnCtx) -> Option<Value> {
    let s = text(a.first()?)?;
    let sub = text(a.get(1)?)?;
    Some(Value::Int(
        s.find(&sub)
            .map_or(-1, |byte| s[..byte].chars().count() as i64),
    ))
}

/// `string.substr(s, start[, end])` by characters; negative positions count from the end.
pub fn substr(a: Args, _: &FnCtx) -> Option<Value> {
    let chars: Vec<char> = text(a.first()?)?.chars().collect();
    let len = chars.len() as i64;
    let clamp = |i: i64| (if i < 0 { len + i } else { i }).clamp(0, len) as usize;
    let start = clamp(a.get(1)?.as_i64()?);
    let end = match a.get(2) {
        Some(v) => clamp(v.as_i64()?),
        None => chars.len(),
    };
    Some(Value::String(if start < end {
        chars[start..end].iter().collect()
    } else {
        String::new()
    }))
}

pub fn tostring(a: Args, _: &FnCtx) -> Option<Value> {
    match a.first()? {
        Value::Null => None,
        Value::Array(items) => Some(Value::String(
            items
                .iter()
                .map(Value::to_text)
                .collect::<Vec<_>>()
                .join(","),
        )),
        v => Some(Value::String(v.to_text())),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[allow(deprecated)] // SipHash-2-4 with zero keys, which is what `hash.sip` has always meant.
pub fn hash_sip(a: Args, _: &FnCtx) -> Option<Value> {
    use std::hash::Hasher;
    let s = text(a.first()?)?;
    let mut h = std::hash::SipHasher::new();
    h.write(s.as_bytes());
    Some(Value::Int(h.finish() as i64))
}

pub fn hash_md5(a: Args, _: &FnCtx) -> Option<Value> {
    Some(Value::String(hex(&md5::Md5::digest(
        text(a.first()?)?.as_bytes(),
    ))))
}

pub fn hash_sha1(a: Args, _: &FnCtx) -> Option<Value> {
    Some(Value::String(hex(&sha1::Sha1::digest(
        text(a.first()?)?.as_bytes(),
    ))))
}

pub fn hash_sha256(a: Args, _: &FnCtx) -> Option<Value> {
    Some(Value::String(hex(&sha2::Sha256::digest(
        text(a.first()?)?.as_bytes(),
    ))))
}

pub fn hash_sha512(a: Args, _: &FnCtx) -> Option<Value> {
    Some(Value::String(hex(&sha2::Sha512::digest(
        text(a.first()?)?.as_bytes(),
    ))))
}

pub fn b64encode(a: Args, _: &FnCtx) -> Option<Value> {
    Some(Value::String(
        base64::engine::general_purpose::STANDARD.encode(text(a.first()?)?),
    ))
}

pub fn b64decode(a: Args, _: &FnCtx) -> Option<Value> {
    let s = text(a.first()?)?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s.trim()))
        .ok()?;
    String::from_utf8(bytes).ok().map(Value::String)
}

/// A random (version 4) UUID.
pub fn uuid(_: Args, _: &FnCtx) -> Option<Value> {
    use rand::RngCore;
    let mut b = [0u8; 16];
    rand::rng().fill_bytes(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex(&b);
    Some(Value::String(format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )))
}
