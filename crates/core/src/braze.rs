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

/// The REST base URL (no trailing slash) for an instance name (any case) or a base URL.
pub fn rest_endpoint(instance: &str) -> Result<String, String> {
    let instance = instance.trim();
    if let Some((_, url)) = INSTANCES
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(instance))
    {
        return Ok((*url).to_string());
    }
    let lower = instance.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"));
    match rest {
        Some(host) if !host.is_empty() && !host.contains(['?', '#', ' ', '@']) => {
            Ok(instance.trim_end_matches('/').to_string())
        }
        _ => Err(format!(
            "instance {instance:?} is neither a Braze instance ({}) nor an http(s) base URL",
            INSTANCES
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instances_and_base_urls() {
        assert_eq!(
            rest_endpoint("US-03").as_deref(),
            Ok("https://rest.iad-03.braze.com")
        );
        assert_eq!(
            rest_endpoint("eu-01").as_deref(),
            Ok("https://rest.fra-01.braze.eu")
        );
        assert_eq!(
            rest_endpoint("http://127.0.0.1:9000/").as_deref(),
            Ok("http://127.0.0.1:9000")
        );
        assert!(rest_endpoint("US-09").is_err());
        assert!(rest_endpoint("ftp://x").is_err());
    }
}
