//! The account's audiences as FilterQL statements by slug, and the INCLUDE graph between them:
//! built here once, for the pipeline (which audiences to evaluate again when one changes) and
//! for the API (refusing a missing INCLUDE, a cycle, a chain deeper than evaluation follows, or
//! deleting an audience others include).

use std::collections::{BTreeSet, HashMap};

use tributary_core::Definition;
use tributary_query::{FilterStatement, parse_filter};

#[derive(Debug, Clone, Default)]
pub struct IncludeGraph {
    statements: HashMap<String, FilterStatement>,
}

impl IncludeGraph {
    /// Parses stored audience definitions. Stored text was validated on the way in, so one
    /// that does not parse is a bug: logged and left out.
    pub fn parse(defs: &[Definition]) -> IncludeGraph {
        let mut statements = HashMap::with_capacity(defs.len());
        for d in defs {
            match parse_filter(&d.text) {
                Ok(st) => {
                    statements.insert(d.name.clone(), st);
                }
                Err(e) => {
                    tracing::error!(slug = %d.name, error = %e, "stored audience does not parse; skipped")
                }
            }
        }
        IncludeGraph { statements }
    }

    /// The statements by slug (what INCLUDE resolves against when evaluating).
    pub fn statements(&self) -> &HashMap<String, FilterStatement> {
        &self.statements
    }

    pub fn get(&self, slug: &str) -> Option<&FilterStatement> {
        self.statements.get(slug)
    }

    /// Adds or replaces an audience (to check a change before it is saved).
    pub fn insert(&mut self, slug: String, statement: FilterStatement) {
        self.statements.insert(slug, statement);
    }

    /// `slug` and every audience it includes, directly or not, each once.
    pub fn reachable(&self, slug: &str) -> Vec<&FilterStatement> {
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        let mut stack = vec![slug.to_string()];
        while let Some(next) = stack.pop() {
            let Some(st) = self.statements.get(&next) else {
                continue;
            };
            if seen.insert(next) {
                stack.extend(st.filter.includes());
                out.push(st);
            }
        }
        out
    }

    /// The slugs of `changed` and of every audience that includes one of them, directly or
    /// not, sorted.
    pub fn with_dependents<'a>(
        &self,
        changed: impl IntoIterator<Item = &'a String>,
    ) -> Vec<String> {
        let mut out: BTreeSet<String> = changed.into_iter().cloned().collect();
        loop {
            let before = out.len();
            for (slug, st) in &self.statements {
                if !out.contains(slug) && st.filter.includes().iter().any(|i| out.contains(i)) {
                    out.insert(slug.clone());
                }
            }
            if out.len() == before {
                return out.into_iter().collect();
            }
        }
    }

    /// The audiences that include `slug` directly, sorted.
    pub fn included_by(&self, slug: &str) -> Vec<String> {
        let mut out: Vec<String> = self
            .statements
            .iter()
            .filter(|(name, st)| *name != slug && st.filter.includes().iter().any(|i| i == slug))
            .map(|(name, _)| name.clone())
            .collect();
        out.sort();
        out
    }

    /// The first cycle through INCLUDE reachable from `start`, as `a -> b -> a`.
    pub fn cycle_from(&self, start: &str) -> Option<String> {
        fn walk(name: &str, graph: &IncludeGraph, path: &mut Vec<String>) -> Option<String> {
            if let Some(pos) = path.iter().position(|p| p == name) {
                let mut cycle = path[pos..].to_vec();
                cycle.push(name.to_string());
                return Some(cycle.join(" -> "));
            }
            let st = graph.statements.get(name)?;
            path.push(name.to_string());
            for inc in st.filter.includes() {
                if let Some(c) = walk(&inc, graph, path) {
                    return Some(c);
                }
            }
            path.pop();
            None
        }
        walk(start, self, &mut Vec::new())
    }

    /// The longest chain of INCLUDE hops from each audience (call on a graph without cycles).
    pub fn depths(&self) -> HashMap<String, usize> {
        fn depth(name: &str, graph: &IncludeGraph, memo: &mut HashMap<String, usize>) -> usize {
            if let Some(d) = memo.get(name) {
                return *d;
            }
            let d = graph.statements.get(name).map_or(0, |st| {
                st.filter
                    .includes()
                    .iter()
                    .map(|inc| 1 + depth(inc, graph, memo))
                    .max()
                    .unwrap_or(0)
            });
            memo.insert(name.to_string(), d);
            d
        }
        let mut memo = HashMap::new();
        for name in self.statements.keys() {
            depth(name, self, &mut memo);
        }
        memo
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(audiences: &[(&str, &str)]) -> IncludeGraph {
        let mut g = IncludeGraph::default();
        for (slug, text) in audiences {
            g.insert(slug.to_string(), parse_filter(text).expect("parses"));
        }
        g
    }

    #[test]
    fn dependents_cycles_and_depths_follow_include() {
        let g = graph(&[
            ("a", "FILTER x = 1"),
            ("b", "FILTER INCLUDE a"),
            ("c", "FILTER AND (INCLUDE b, y = 2)"),
        ]);
        let changed = ["a".to_string()];
        assert_eq!(g.with_dependents(&changed), vec!["a", "b", "c"]);
        assert_eq!(g.included_by("a"), vec!["b"]);
        assert_eq!(g.depths()["c"], 2);
        assert_eq!(g.reachable("c").len(), 3);
        assert!(g.cycle_from("c").is_none());
        let looped = graph(&[("a", "FILTER INCLUDE b"), ("b", "FILTER INCLUDE a")]);
        assert_eq!(looped.cycle_from("a").as_deref(), Some("a -> b -> a"));
    }
}
