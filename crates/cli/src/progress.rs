//! Progress of a long command: an `indicatif` bar when stderr is a terminal, otherwise a plain
//! log line every few seconds (so a CI log or a cron mail shows the same facts without escape
//! codes). One helper for `tributary import csv` and `tributary rebuild`.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often a plain log line is written when stderr is not a terminal.
const LOG_EVERY: Duration = Duration::from_secs(5);

/// What the bar's position counts.
#[derive(Clone, Copy)]
pub enum Unit {
    /// Bytes of a file; the items (rows) are counted beside them.
    Bytes,
    /// The items themselves (events).
    Items,
}

pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
    label: &'static str,
    items: &'static str,
    unit: Unit,
    started: Instant,
    /// When the last plain line was written; `None` before the first, which is written at once.
    last_line: Mutex<Option<Instant>>,
    total: u64,
}

impl Progress {
    /// `label` names the command in log lines; `items` names what is counted ("rows").
    pub fn new(label: &'static str, items: &'static str, unit: Unit, total: u64) -> Progress {
        let bar = std::io::IsTerminal::is_terminal(&std::io::stderr()).then(|| {
            let bar = indicatif::ProgressBar::new(total);
            let template = match unit {
                Unit::Bytes => "{bar:40} {bytes}/{total_bytes} {msg} ETA {eta}",
                Unit::Items => "{bar:40} {pos}/{len} {msg} ETA {eta}",
            };
            let style = indicatif::ProgressStyle::with_template(template)
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
            bar.set_style(style);
            bar
        });
        Progress {
            bar,
            label,
            items,
            unit,
            started: Instant::now(),
            last_line: Mutex::new(None),
            total,
        }
    }

    /// The total became known or changed (events received while a rebuild runs).
    pub fn set_total(&mut self, total: u64) {
        self.total = total;
        if let Some(bar) = &self.bar {
            bar.set_length(total);
        }
    }

    /// `position` counts in the bar's unit; `items` is the number of items done so far.
    pub fn update(&self, position: u64, items: u64) {
        match &self.bar {
            Some(bar) => {
                let (noun, rate) = (self.items, self.rate(items));
                bar.set_position(position);
                bar.set_message(format!("{items} {noun}, {rate:.0} {noun}/s"));
            }
            None => {
                let mut last = self.last_line.lock().unwrap_or_else(|p| p.into_inner());
                if last.is_none_or(|at| at.elapsed() >= LOG_EVERY) {
                    *last = Some(Instant::now());
                    self.log_line(position, items);
                }
            }
        }
    }

    /// Clears the bar; without one, writes the final state as a last line.
    pub fn finish(&self, position: u64, items: u64) {
        match &self.bar {
            Some(bar) => bar.finish_and_clear(),
            None => self.log_line(position, items),
        }
    }

    fn rate(&self, items: u64) -> f64 {
        items as f64 / self.started.elapsed().as_secs_f64().max(0.001)
    }

    fn log_line(&self, position: u64, items: u64) {
        let (label, noun, total, rate) = (self.label, self.items, self.total, self.rate(items));
        match self.unit {
            Unit::Bytes => eprintln!(
                "{label}: {position} of {total} bytes read, {items} {noun}, {rate:.0} {noun}/s"
            ),
            Unit::Items => eprintln!("{label}: {items} of {total} {noun}, {rate:.0} {noun}/s"),
        }
    }
}
