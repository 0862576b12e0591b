//! Email addresses, URLs and user agents.

use std::collections::BTreeMap;

use super::{FnCtx, text};
use crate::eval::glob_match;
use crate::value::Value;

type Args<'a> = &'a [Value];

/// The address in `Bob <Bob@X.io>` or `bob@x.io`, lower-cased; `None` when there is none.
pub fn parse_email(s: &str) -> Option<String> {
    let s = s.trim();
    let inner = match (s.rfind('<'), s.rfind('>')) {
        (Some(a), Some(b)) if a < b => &s[a + 1..b],
        _ => s,
    };
    let inner = inner.trim().trim_start_matches("mailto:");
    let (name, domain) = inner.rsplit_once('@')?;
    let valid = !name.is_empty()
        && !domain.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !inner
            .chars()
            .any(|c| c.is_whitespace() || c == ',' || c == '<' || c == '>');
    valid.then(|| inner.to_lowercase())
}

pub fn email(a: Args, _: &FnCtx) -> Option<Value> {
    parse_email(&text(a.first()?)?).map(Value::String)
}

pub fn emailname(a: Args, _: &FnCtx) -> Option<Value> {
    let e = parse_email(&text(a.first()?)?)?;
    e.split_once('@').map(|(n, _)| Value::String(n.to_string()))
}

pub fn emaildomain(a: Args, _: &FnCtx) -> Option<Value> {
    let e = parse_email(&text(a.first()?)?)?;
    e.split_once('@').map(|(_, d)| Value::String(d.to_string()))
}

/// The parts of a URL that may lack its scheme (`www.x.com/a?b=c`).
struct Url<'a> {
    host: &'a str,
    path: &'a str,
    query: &'a str,
}

fn parse_url(s: &str) -> Option<Url<'_>> {
    let s = s.trim();
    let rest = match s.find("://") {
        Some(i) => &s[i + 3..],
        None => s.strip_prefix("//").unwrap_or(s),
    };
    let rest = rest.split('#').next().unwrap_or("");
    let (before_query, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (host, path) = match before_query.find('/') {
        Some(i) => (&before_query[..i], &before_query[i..]),
        None => (before_query, ""),
    };
    let host = host.rsplit('@').next().unwrap_or(host);
    let host = host.split(':').next().unwrap_or(host);
    (!host.is_empty() || !path.is_empty()).then_some(Url { host, path, query })
}

fn registered_domain(host: &str) -> String {
    let host = host.to_lowercase();
    let labels: Vec<&str> = host.split('.').filter(|l| !l.is_empty()).collect();
    let keep = match labels.as_slice() {
        [.., second, last] if last.len() == 2 && second.len() <= 3 && labels.len() > 2 => 3,
        _ => 2,
    };
    labels[labels.len().saturating_sub(keep)..].join(".")
}

pub fn domain(a: Args, _: &FnCtx) -> Option<Value> {
    let u = parse_url(&text(a.first()?)?)?.host.to_string();
    (!u.is_empty()).then(|| Value::String(registered_domain(&u)))
}

pub fn domains(a: Args, ctx: &FnCtx) -> Option<Value> {
    let out: Vec<Value> = spread(a)
        .iter()
        .filter_map(|v| domain(std::slice::from_ref(v), ctx))
        .collect();
    Some(Value::Array(out))
}

pub fn host(a: Args, _: &FnCtx) -> Option<Value> {
    let h = parse_url(&text(a.first()?)?)?.host.to_lowercase();
    (!h.is_empty()).then_some(Value::String(h))
}

pub fn hosts(a: Args, ctx: &FnCtx) -> Option<Value> {
    Some(Value::Array(
        spread(a)
            .iter()
            .filter_map(|v| host(std::slice::from_ref(v), ctx))
            .collect(),
    ))
}

fn spread(a: Args) -> Vec<Value> {
    a.iter()
        .flat_map(|v| match v {
            Value::Array(items) => items.clone(),
            other => vec![other.clone()],
        })
        .collect()
}

pub fn path(a: Args, _: &FnCtx) -> Option<Value> {
    let s = text(a.first()?)?;
    let p = parse_url(&s)?.path;
    Some(Value::String(if p.is_empty() {
        "/".to_string()
    } else {
        p.to_string()
    }))
}

fn query_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

pub fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or(())
                {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn qs_value(url: &str, name: &str) -> Option<Value> {
    let u = parse_url(url)?;
    query_pairs(u.query)
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| Value::String(v))
}

/// `qs(url, name)`: lower-cases the URL first.
pub fn qs_lower(a: Args, _: &FnCtx) -> Option<Value> {
    qs_value(
        &text(a.first()?)?.to_lowercase(),
        &text(a.get(1)?)?.to_lowercase(),
    )
}

/// `qs2(url, name)`: as given.
pub fn qs(a: Args, _: &FnCtx) -> Option<Value> {
    qs_value(&text(a.first()?)?, &text(a.get(1)?)?)
}

fn rebuild(u: &Url<'_>, keep: impl Fn(&str) -> bool) -> String {
    let kept: Vec<&str> = u
        .query
        .split('&')
        .filter(|p| !p.is_empty() && keep(&decode(p.split('=').next().unwrap_or(""))))
        .collect();
    let mut out = format!("{}{}", u.host, u.path);
    if !kept.is_empty() {
        out.push('?');
        out.push_str(&kept.join("&"));
    }
    out
}

/// `url.matchqs(url, "utm_*", ...)`: host and path with only the matching parameters.
pub fn matchqs(a: Args, _: &FnCtx) -> Option<Value> {
    let s = text(a.first()?)?;
    let u = parse_url(&s)?;
    let patterns: Vec<String> = a[1..].iter().filter_map(text).collect();
    Some(Value::String(rebuild(&u, |k| {
        patterns.iter().any(|p| glob_match(p, k))
    })))
}

/// `urlminusqs(url, "param", ...)`: host and path without the named parameters.
pub fn urlminusqs(a: Args, _: &FnCtx) -> Option<Value> {
    let s = text(a.first()?)?;
    let u = parse_url(&s)?;
    let drop: Vec<String> = a[1..].iter().filter_map(text).collect();
    Some(Value::String(rebuild(&u, |k| !drop.iter().any(|d| d == k))))
}

pub fn urldecode(a: Args, _: &FnCtx) -> Option<Value> {
    Some(Value::String(decode(&text(a.first()?)?)))
}

/// Host and path, without scheme or query: `www.lytics.com/blog`.
pub fn urlmain(a: Args, _: &FnCtx) -> Option<Value> {
    let s = text(a.first()?)?;
    let u = parse_url(&s)?;
    Some(Value::String(format!(
        "{}{}",
        u.host.to_lowercase(),
        if u.path.is_empty() { "/" } else { u.path }
    )))
}

struct Agent {
    bot: bool,
    mobile: bool,
    os: &'static str,
    browser: &'static str,
}

fn classify(ua: &str) -> Agent {
    let l = ua.to_lowercase();
    let bot = [
        "bot",
        "crawler",
        "spider",
        "slurp",
        "curl/",
        "wget",
        "python-requests",
        "headless",
    ]
    .iter()
    .any(|b| l.contains(b));
    let mobile = ["mobile", "iphone", "android", "ipod", "windows phone"]
        .iter()
        .any(|m| l.contains(m))
        && !l.contains("ipad");
    let os = if l.contains("windows") {
        "Windows"
    } else if l.contains("iphone") || l.contains("ipad") || l.contains("ipod") {
        "iOS"
    } else if l.contains("mac os x") || l.contains("macintosh") {
        "Mac OS X"
    } else if l.contains("android") {
        "Android"
    } else if l.contains("cros") {
        "Chrome OS"
    } else if l.contains("linux") {
        "Linux"
    } else {
        "Unknown"
    };
    let browser = if l.contains("edg/") || l.contains("edge/") {
        "Edge"
    } else if l.contains("opr/") || l.contains("opera") {
        "Opera"
    } else if l.contains("firefox/") {
        "Firefox"
    } else if l.contains("chrome/") || l.contains("crios/") {
        "Chrome"
    } else if l.contains("safari/") {
        "Safari"
    } else if l.contains("msie") || l.contains("trident/") {
        "Internet Explorer"
    } else {
        "Unknown"
    };
    Agent {
        bot,
        mobile,
        os,
        browser,
    }
}

/// `useragent(ua, "bot" | "mobile" | "os" | "browser")`.
pub fn useragent(a: Args, _: &FnCtx) -> Option<Value> {
    let agent = classify(&text(a.first()?)?);
    match text(a.get(1)?)?.to_lowercase().as_str() {
        "bot" => Some(Value::Bool(agent.bot)),
        "mobile" => Some(Value::Bool(agent.mobile)),
        "os" => Some(Value::String(agent.os.into())),
        "browser" => Some(Value::String(agent.browser.into())),
        _ => None,
    }
}

pub fn useragent_map(a: Args, _: &FnCtx) -> Option<Value> {
    let agent = classify(&text(a.first()?)?);
    Some(Value::Map(BTreeMap::from([
        ("bot".to_string(), Value::Bool(agent.bot)),
        ("mobile".to_string(), Value::Bool(agent.mobile)),
        ("os".to_string(), Value::String(agent.os.into())),
        ("browser".to_string(), Value::String(agent.browser.into())),
    ])))
}

/// `ipfilter(ip, "10.0.0.0/8", "192.168.1.7", ...)`: whether an address is in any of the
/// networks (CIDR) or equal to any of the addresses.
pub fn ipfilter(a: Args, _: &FnCtx) -> Option<Value> {
    let ip: std::net::IpAddr = text(a.first()?)?.trim().parse().ok()?;
    let hit = a[1..]
        .iter()
        .filter_map(text)
        .any(|net| in_network(ip, net.trim()));
    Some(Value::Bool(hit))
}

fn in_network(ip: std::net::IpAddr, net: &str) -> bool {
    use std::net::IpAddr;
    let (addr, bits) = match net.split_once('/') {
        Some((a, b)) => (a, b.parse::<u32>().ok()),
        None => (net, None),
    };
    let Ok(base) = addr.parse::<IpAddr>() else {
        return false;
    };
    match (ip, base) {
        (IpAddr::V4(x), IpAddr::V4(y)) => {
            let bits = bits.unwrap_or(32).min(32);
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            u32::from(x) & mask == u32::from(y) & mask
        }
        (IpAddr::V6(x), IpAddr::V6(y)) => {
            let bits = bits.unwrap_or(128).min(128);
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits)
            };
            u128::from(x) & mask == u128::from(y) & mask
        }
        _ => false,
    }
}

/// `json.jmespath(json_text_or_value, "a.b[0].c")`: the JMESPath subset of field names, dots
/// and array indexes (negative counts from the end).
pub fn jmespath(a: Args, _: &FnCtx) -> Option<Value> {
    let doc = match a.first()? {
        Value::String(s) => Value::from_json(&serde_json::from_str::<serde_json::Value>(s).ok()?),
        other => other.clone(),
    };
    let expr = text(a.get(1)?)?;
    let mut current = doc;
    for segment in expr.split('.') {
        let (name, indexes) = match segment.find('[') {
            Some(i) => (&segment[..i], &segment[i..]),
            None => (segment, ""),
        };
        if !name.is_empty() {
            current = match current {
                Value::Map(mut m) => m.remove(name.trim_matches('"'))?,
                _ => return None,
            };
        }
        for index in indexes.split('[').filter(|s| !s.is_empty()) {
            let i: i64 = index.strip_suffix(']')?.trim().parse().ok()?;
            current = match current {
                Value::Array(mut items) => {
                    let len = items.len() as i64;
                    let at = if i < 0 { len + i } else { i };
                    if !(0..len).contains(&at) {
                        return None;
                    }
                    items.swap_remove(at as usize)
                }
                _ => return None,
            };
        }
    }
    (!current.is_null()).then_some(current)
}
