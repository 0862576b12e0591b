//! Audience membership: which audiences a profile is in, and when that can next change.
//!
//! The pipeline asks [`Audiences::evaluate`] about every profile a batch changed, with the
//! fields it touched: only the audiences that read one of them (following INCLUDE) are
//! evaluated again, the rest keep their previous answer. Date-relative audiences also give
//! the profile a `next_check`, the earliest instant at which the passing of time alone can
//! change an answer ([`tributary_query::next_change`]), so they are re-evaluated then rather
//! than on a timer.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap, HashSet};

use rustc_hash::FxHashSet;
use time::OffsetDateTime;
use tributary_core::{Definition, MembershipChange, Micros, from_micros, to_micros};
use tributary_query::eval::{EvalContext, Fields, matches};
use tributary_query::{FilterStatement, Value, parse_filter};

use crate::resolve::Plans;
use crate::state::{FieldState, ProfileState};

/// Fields every profile has, derived from its events rather than from a mapping. An event
/// touches `_last_seen`, `_event_count` (and possibly `_first_seen`) on every profile.
pub const META_FIELDS: &[&str] = &[
    "_id",
    "_created",
    "_first_seen",
    "_last_seen",
    "_event_count",
];
pub const EVENT_META_FIELDS: &[&str] = &["_first_seen", "_last_seen", "_event_count"];

/// The account's audiences, parsed, with what each one reads.
#[derive(Default)]
pub struct Audiences {
    /// By slug, for INCLUDE.
    statements: HashMap<String, FilterStatement>,
    list: Vec<Audience>,
}

pub struct Audience {
    pub slug: String,
    /// The definition's `updated_at`.
    pub version: Micros,
    /// Top-level fields read, INCLUDEs followed; `None` when any field may matter.
    reads: Option<BTreeSet<String>>,
    /// Whether time alone can change the answer (INCLUDEs followed).
    time_relative: bool,
    /// Whether its stored membership was computed for this definition.
    computed: bool,
    /// (A copy of the one in `statements`: evaluating every audience for every profile must
    /// not hash slugs.)
    statement: FilterStatement,
}

/// Which audiences to evaluate again for a profile.
pub enum Scope<'a> {
    All,
    /// Those reading any of these fields.
    Fields(&'a FxHashSet<&'a str>),
    /// These, by slug (a recompute: the answers of the others are left out).
    Only(&'a [String]),
    /// The date-relative ones (the profile's `next_check` came).
    TimeRelative,
}

impl Audiences {
    pub fn compile(defs: &[Definition]) -> Audiences {
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
        let mut list = Vec::with_capacity(statements.len());
        for d in defs {
            if !statements.contains_key(&d.name) {
                continue;
            }
            let mut reads = Some(BTreeSet::new());
            let mut time_relative = false;
            let mut seen = HashSet::new();
            let mut stack = vec![d.name.clone()];
            while let Some(slug) = stack.pop() {
                let Some(st) = statements.get(&slug) else {
                    continue;
                };
                if !seen.insert(slug) {
                    continue;
                }
                match (st.filter.fields(), reads.as_mut()) {
                    (Some(fields), Some(all)) => all.extend(fields),
                    (None, _) => reads = None,
                    (Some(_), None) => {}
                }
                time_relative |= st.filter.is_time_relative();
                stack.extend(st.filter.includes());
            }
            let Some(statement) = statements.get(&d.name).cloned() else {
                continue;
            };
            list.push(Audience {
                slug: d.name.clone(),
                version: d.updated_at,
                reads,
                time_relative,
                computed: false,
                statement,
            });
        }
        Audiences { statements, list }
    }

    /// Records which audiences' stored membership matches their definition.
    pub fn with_stored_versions(mut self, stored: &[tributary_core::AudienceVersion]) -> Self {
        for a in &mut self.list {
            a.computed = stored
                .iter()
                .any(|v| v.segment == a.slug && v.version == a.version);
        }
        self
    }

    pub fn list(&self) -> &[Audience] {
        &self.list
    }

    /// The newest definition: what a profile evaluated now records as its `segments_version`.
    pub fn newest_version(&self) -> Micros {
        self.list.iter().map(|a| a.version).max().unwrap_or(0)
    }

    /// The entries and exits that take a profile from its recorded audiences to `after`.
    /// The store keeps only those that change its table, so the profile's record serves to
    /// leave out audiences whose answer did not change, except where the record may be
    /// wrong: for an audience computed (`with_stored_versions`) after the record was made,
    /// the profile's answer is sent either way. For audiences still being computed, the
    /// recompute that follows reconciles the rest.
    pub fn changes(
        &self,
        profile_id: i64,
        recorded: &ProfileState,
        after: &BTreeSet<String>,
        out: &mut Vec<MembershipChange>,
    ) {
        for a in &self.list {
            let was = recorded.segments.contains(&a.slug);
            let is = after.contains(&a.slug);
            let change = || MembershipChange {
                segment: a.slug.clone(),
                profile_id,
                entered: is,
            };
            let record_stale = a.computed && a.version > recorded.segments_version;
            if was != is || record_stale {
                out.push(change());
            }
        }
    }

    /// The exits of a profile that goes away (merged into another).
    pub fn departures(
        &self,
        profile_id: i64,
        recorded: &ProfileState,
        out: &mut Vec<MembershipChange>,
    ) {
        self.changes(profile_id, recorded, &BTreeSet::new(), out);
    }

    /// The slugs of `changed` and of every audience that INCLUDEs one of them, directly or not.
    /// Sorted (a recompute merges its audiences' members in this order).
    pub fn with_dependents(&self, changed: &HashSet<String>) -> Vec<String> {
        let mut out: BTreeSet<String> = changed.iter().cloned().collect();
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

    fn in_scope(&self, a: &Audience, scope: &Scope<'_>) -> bool {
        match scope {
            Scope::All => true,
            // A few slugs: a scan (lengths compared first) measured as fast as a hash set;
            // a binary search made the whole recompute 10 % slower.
            Scope::Only(slugs) => slugs.contains(&a.slug),
            Scope::TimeRelative => a.time_relative,
            Scope::Fields(touched) => match &a.reads {
                None => true,
                Some(reads) => reads.iter().any(|f| touched.contains(f.as_str())),
            },
        }
    }

    /// The profile's audiences after a change of the kind `scope` describes, and its next
    /// check. Audiences out of scope keep their recorded answer if it is current (except
    /// under `Only`, which answers for its audiences alone); slugs of audiences that no
    /// longer exist are dropped.
    pub fn evaluate(
        &self,
        profile: &ProfileView<'_>,
        scope: &Scope<'_>,
        now: OffsetDateTime,
    ) -> (BTreeSet<String>, Option<Micros>) {
        let ctx = EvalContext::with_includes(now, &self.statements);
        let mut next: Option<OffsetDateTime> = None;
        let mut out = BTreeSet::new();
        for a in &self.list {
            let st = &a.statement;
            // An answer recorded before the audience last changed is not kept.
            let recorded = a.version <= profile.state.segments_version && a.computed;
            let in_scope = self.in_scope(a, scope);
            let member = match scope {
                Scope::Only(_) if !in_scope => false,
                _ if in_scope || !recorded => matches(&st.filter, profile, &ctx),
                _ => profile.state.segments.contains(&a.slug),
            };
            if member {
                out.insert(a.slug.clone());
            }
            if a.time_relative
                && let Some(t) = tributary_query::boundary::next_change(&st.filter, profile, &ctx)
            {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        }
        (out, next.map(to_micros))
    }
}

/// A profile as FilterQL sees it: its fields' values plus the meta fields.
pub struct ProfileView<'a> {
    pub id: i64,
    pub created_at: Micros,
    pub state: &'a ProfileState,
    pub plans: &'a Plans,
}

fn descend<'v>(value: Cow<'v, Value>, rest: &[String]) -> Option<Cow<'v, Value>> {
    let Some((first, more)) = rest.split_first() else {
        return Some(value);
    };
    match value {
        Cow::Borrowed(Value::Map(m)) => descend(Cow::Borrowed(m.get(first)?), more),
        Cow::Owned(Value::Map(mut m)) => descend(Cow::Owned(m.remove(first)?), more),
        _ => None,
    }
}

impl ProfileView<'_> {
    fn meta(&self, name: &str) -> Option<Value> {
        Some(match name {
            "_id" => Value::Int(self.id),
            "_created" => Value::Time(from_micros(self.created_at)),
            "_first_seen" => Value::Time(from_micros(self.state.first_seen)),
            "_last_seen" => Value::Time(from_micros(self.state.last_seen)),
            "_event_count" => Value::Int(self.state.events),
            _ => return None,
        })
    }

    fn field(&self, name: &str) -> Option<Cow<'_, Value>> {
        match self.state.fields.get(name)? {
            FieldState::Scalar { value, .. } => Some(Cow::Borrowed(value)),
            keyed => Some(Cow::Owned(keyed.value(Some(self.plans.spec(name))))),
        }
    }
}

impl Fields for ProfileView<'_> {
    fn get(&self, path: &[String]) -> Option<Cow<'_, Value>> {
        let (first, rest) = path.split_first()?;
        if let Some(v) = self.meta(first) {
            return descend(Cow::Owned(v), rest);
        }
        match self.field(first) {
            Some(v) => descend(v, rest).filter(|v| !v.is_null()),
            // A flat field whose name has dots: `user.city` stored as one key.
            None if !rest.is_empty() => self.field(&path.join(".")),
            None => None,
        }
    }

    fn for_each(&self, f: &mut dyn FnMut(&str, &Value)) {
        for name in self.state.fields.keys() {
            if let Some(v) = self.field(name) {
                f(name, &v);
            }
        }
        for name in META_FIELDS {
            if let Some(v) = self.meta(name) {
                f(name, &v);
            }
        }
    }
}
