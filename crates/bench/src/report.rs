//! BENCHMARKS.md sections: each scenario owns the text between its markers and replaces only
//! that on `--write`, so scenarios can be re-run one at a time.

use std::path::Path;

const HEADER: &str = "# Benchmarks\n\nMeasured by the harness in `crates/bench` (`cargo run --release -p tributary-bench -- <scenario> --write BENCHMARKS.md`).\nEvery figure is the median of several runs; each scenario runs next to its baseline in the same process, so compare ratios, not absolute numbers, across machines.\n";

pub fn write_section(path: &Path, name: &str, body: &str) -> anyhow::Result<()> {
    let begin = format!("<!-- bench:{name} -->");
    let end = format!("<!-- /bench:{name} -->");
    let section = format!("{begin}\n{}\n{end}", body.trim_end());
    let current = std::fs::read_to_string(path).unwrap_or_else(|_| HEADER.to_string());
    let updated = match (current.find(&begin), current.find(&end)) {
        (Some(b), Some(e)) if e > b => {
            format!("{}{}{}", &current[..b], section, &current[e + end.len()..])
        }
        _ => format!("{}\n{}\n", current.trim_end(), section),
    };
    std::fs::write(path, updated)?;
    Ok(())
}

pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// Machine facts for the report header.
pub fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!("{cores} cores, {cpu}")
}

/// CPU seconds (user + system) of a process, from /proc.
pub fn process_cpu(pid: u32) -> f64 {
    let ticks = 100.0; // USER_HZ on Linux
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let after = stat.rsplit_once(')')?.1;
            let fields: Vec<&str> = after.split_whitespace().collect();
            let utime: f64 = fields.get(11)?.parse().ok()?;
            let stime: f64 = fields.get(12)?.parse().ok()?;
            Some((utime + stime) / ticks)
        })
        .unwrap_or(f64::NAN)
}
