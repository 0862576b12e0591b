//! Braze instances (docs/braze.md §2): the names customers see in their dashboard and the REST
//! endpoint of each. An authorization may also name a base URL (a proxy, a cluster newer
//! than this table, or a local simulator).

/// Instance name → REST endpoint.
pub const INSTANCES: &[(&str, &str)] = &[
    ("US-01", "https://rest.iad-01.braze.com"),
    ("US-02", "https://rest.iad-02.braze.com"),
    ("US-03", "https://rest.iad-03.braze.com"),
    ("US-04", "https://rest.iad-04.braze.com"),
    ("US-05", "https://rest.iad-05.braze.com"),
    ("US-06", "https://rest.iad-06.braze.com"),
    ("US-07", "https://rest.iad-07.braze.com"),
    ("US-08", "https://rest.iad-08.braze.com"),
    ("US-10", "https://rest.us-10.braze.com"),
    ("EU-01", "https://rest.fra-01.braze.eu"),
    ("EU-02", "https://rest.fra-02.braze.eu"),
    ("AU-01", "https://rest.au-01.braze.com"),
    ("ID-01", "https://rest.id-01.braze.com"),
    ("JP-01", "https://rest.jp-01.braze.com"),
    ("KR-01", "https://rest.kr-01.braze.com"),
];

/// The setting that lists the base URLs, beyond the named instances, that may receive a
/// Braze API key.
pub const ALLOW_URLS_SETTING: &str = "TRIBUTARY_BRAZE_ALLOW_URLS";

/// Base URLs other than the named Braze instances that an operator allows API keys to be sent
/// to (`TRIBUTARY_BRAZE_ALLOW_URLS`): `http://127.0.0.1` allows any port of that host,
/// `http://127.0.0.1:9000` that port only. Empty by default: only Braze's own hosts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UrlAllowList {
    entries: Vec<Origin>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Origin {
    scheme: String,
    host: String,
    /// `None`: any port.
    port: Option<u16>,
}

impl Origin {
    /// `scheme://host[:port]`, nothing else (no path, user, query); the host lower-cased.
    fn parse(text: &str) -> Option<Origin> {
        let text = text.trim().trim_end_matches('/');
        let (scheme, rest) = text.split_once("://")?;
        let scheme = scheme.to_ascii_lowercase();
        if !matches!(scheme.as_str(), "http" | "https")
            || rest.is_empty()
            || rest.contains(['/', '?', '#', '@', ' ', '\\'])
        {
            return None;
        }
        // An IPv6 literal keeps its brackets: `[::1]:9000`.
        let (host, port) = match rest.rsplit_once(':') {
            Some((host, port)) if !port.contains(']') => (host, Some(port.parse::<u16>().ok()?)),
            _ => (rest, None),
        };
        if host.is_empty() {
            return None;
        }
        Some(Origin {
            scheme,
            host: host.to_ascii_lowercase(),
            port,
        })
    }
}

impl UrlAllowList {
    /// Parses the setting's comma-separated list; an entry that is not `scheme://host[:port]`
    /// is an error naming it.
    pub fn parse(setting: &str) -> Result<UrlAllowList, String> {
        let mut entries = Vec::new();
        for item in setting.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let origin = Origin::parse(item).ok_or_else(|| {
                format!("{ALLOW_URLS_SETTING}: {item:?} is not an http(s)://host[:port] base URL")
            })?;
            entries.push(origin);
        }
        Ok(UrlAllowList { entries })
    }

    /// Whether a base URL may receive a key.
    pub fn allows(&self, base_url: &str) -> bool {
        let Some(url) = Origin::parse(base_url) else {
            return false;
        };
        self.entries.iter().any(|allowed| {
            allowed.scheme == url.scheme
                && allowed.host == url.host
                && (allowed.port.is_none() || allowed.port == url.port)
        })
    }
}

/// The REST base URL (no trailing slash) for an instance name (any case), or for a base URL
/// the operator allows. Anything else is refused, so an API key is never sent to a host
/// nobody vetted (an internal service, a metadata endpoint, plain http).
pub fn rest_endpoint(instance: &str, allowed: &UrlAllowList) -> Result<String, String> {
    let instance = instance.trim();
    if let Some((_, url)) = INSTANCES
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(instance))
    {
        return Ok((*url).to_string());
    }
    let names = INSTANCES
        .iter()
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(", ");
    if Origin::parse(instance).is_none() {
        return Err(format!(
            "instance {instance:?} is neither a Braze instance ({names}) nor an http(s) base URL"
        ));
    }
    if !allowed.allows(instance) {
        return Err(format!(
            "instance {instance:?} is not a Braze instance ({names}); another base URL \
             receives API keys only when the operator lists it in {ALLOW_URLS_SETTING}"
        ));
    }
    Ok(instance.trim_end_matches('/').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_instances_always_and_base_urls_only_when_allowed() {
        let none = UrlAllowList::default();
        assert_eq!(
            rest_endpoint("US-03", &none).as_deref(),
            Ok("https://rest.iad-03.braze.com")
        );
        assert_eq!(
            rest_endpoint("eu-01", &none).as_deref(),
            Ok("https://rest.fra-01.braze.eu")
        );
        for hostile in [
            "http://127.0.0.1:9000",
            "http://169.254.169.254",
            "http://[::1]:8080",
            "https://internal.example",
            "http://localhost",
        ] {
            let refused = rest_endpoint(hostile, &none).expect_err(hostile);
            assert!(refused.contains(ALLOW_URLS_SETTING), "{refused}");
        }
        assert!(rest_endpoint("US-09", &none).is_err());
        assert!(rest_endpoint("ftp://x", &none).is_err());

        let any_port = UrlAllowList::parse("http://127.0.0.1, https://braze.proxy.example:8443")
            .expect("valid");
        assert_eq!(
            rest_endpoint("http://127.0.0.1:9000/", &any_port).as_deref(),
            Ok("http://127.0.0.1:9000")
        );
        assert!(any_port.allows("http://127.0.0.1"));
        assert!(any_port.allows("HTTP://127.0.0.1:1"));
        assert!(
            !any_port.allows("https://127.0.0.1:9000"),
            "the scheme counts"
        );
        assert!(!any_port.allows("http://127.0.0.2:9000"));
        assert!(!any_port.allows("http://127.0.0.1.evil.example"));
        assert!(!any_port.allows("http://127.0.0.1@evil.example"));
        assert!(any_port.allows("https://braze.proxy.example:8443"));
        assert!(!any_port.allows("https://braze.proxy.example:8444"));
        assert!(!any_port.allows("https://braze.proxy.example"));

        let one_port = UrlAllowList::parse("http://127.0.0.1:9000").expect("valid");
        assert!(one_port.allows("http://127.0.0.1:9000"));
        assert!(!one_port.allows("http://127.0.0.1:9001"));
        let v6 = UrlAllowList::parse("http://[::1]:9000").expect("valid");
        assert!(v6.allows("http://[::1]:9000"));
        assert!(!v6.allows("http://[::1]:9001"));

        for bad in [
            "127.0.0.1",
            "http://",
            "http://h/path",
            "http://h:port",
            "ftp://h",
        ] {
            let err = UrlAllowList::parse(bad).expect_err(bad);
            assert!(err.starts_with(ALLOW_URLS_SETTING), "{err}");
        }
        assert_eq!(UrlAllowList::parse(" ,").expect("empty"), none);
    }
}
