//! An account's LQL queries compiled into mapping plans, by stream, and what one raw event
//! maps to.

use std::collections::HashMap;

use tributary_core::{Definition, IdentityKey, Micros, StoredEvent};
use tributary_query::lql::{MappingPlan, compile};
use tributary_query::{Value, parse_lql};

use crate::state::FieldSpec;

/// The account's compiled LQL queries, by stream.
#[derive(Default)]
pub struct Plans {
    plans: Vec<MappingPlan>,
    /// Indexes into `plans`.
    by_stream: HashMap<String, Vec<usize>>,
    specs: HashMap<String, FieldSpec>,
}

impl Plans {
    pub fn compile(queries: &[Definition]) -> Plans {
        let mut plans = Plans::default();
        for def in queries {
            let compiled = parse_lql(&def.text)
                .map_err(|e| e.to_string())
                .and_then(|mut sts| compile(&sts.remove(0)).map_err(|e| e.to_string()));
            match compiled {
                Ok(plan) => {
                    for f in &plan.fields {
                        plans
                            .specs
                            .entry(f.name.clone())
                            .or_insert_with(|| FieldSpec::from(f));
                    }
                    plans
                        .by_stream
                        .entry(plan.stream.clone())
                        .or_default()
                        .push(plans.plans.len());
                    plans.plans.push(plan);
                }
                Err(e) => {
                    tracing::error!(query = %def.name, error = %e, "stored LQL query does not compile; skipped")
                }
            }
        }
        plans
    }

    pub fn spec(&self, field: &str) -> FieldSpec {
        self.specs.get(field).copied().unwrap_or(FieldSpec {
            kind: tributary_query::ast::Kind::String,
            op: tributary_query::ast::MergeOp::Latest,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.by_stream.is_empty()
    }

    pub fn all(&self) -> impl Iterator<Item = &MappingPlan> {
        self.plans.iter()
    }

    /// The plan at an index [`Mapped::updates`] names.
    pub fn plan(&self, index: usize) -> &MappingPlan {
        &self.plans[index]
    }

    /// Maps one raw event with every query of its stream; `None` when no query reads it.
    pub fn map(&self, event: &StoredEvent) -> Option<Mapped> {
        let indexes = self.by_stream.get(&event.stream)?;
        // Straight from the stored text into the evaluator's map; a payload that is not a JSON
        // object maps to nothing.
        let payload: tributary_query::eval::Profile = serde_json::from_str(&event.payload).ok()?;
        let at = tributary_core::from_micros(event.event_time);
        let mut mapped = Mapped {
            event_id: event.id,
            event_time: event.event_time,
            keys: Vec::new(),
            updates: Vec::new(),
        };
        for &p in indexes {
            let plan = &self.plans[p];
            let Some(m) = plan.apply(&payload, at) else {
                continue;
            };
            for (field, value) in m.identities {
                let key = IdentityKey::new(field, value);
                if !mapped.keys.contains(&key) {
                    mapped.keys.push(key);
                }
            }
            for (f, value) in m.updates {
                mapped.updates.push((p, f, value));
            }
        }
        Some(mapped)
    }
}

/// What one event contributes.
pub struct Mapped {
    pub event_id: i64,
    pub event_time: Micros,
    pub keys: Vec<IdentityKey>,
    /// `(plan, field of that plan, value)`: indexes into [`Plans`], so no name is copied.
    pub updates: Vec<(usize, usize, Value)>,
}
