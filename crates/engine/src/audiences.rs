//! Audience membership: which audiences a profile is in, and when that can next change.
//!
//! The pipeline asks [`Audiences::evaluate`] about every profile a batch changed, with the
//! fields it touched: only the audiences that read one of them (following INCLUDE) are
//! evaluated again, the rest keep their previous answer. Date-relative audiences also give
//! the profile a `next_check`, the earliest instant at which the passing of time alone can
//! change an answer ([`tributary_query::next_change`]), so they are re-evaluated then rather
//! than on a timer.

use std::collections::{BTreeSet, HashSet};

use rustc_hash::FxHashSet;
use time::OffsetDateTime;
use tributary_core::{Definition, MembershipChange, Micros, to_micros};
use tributary_query::FilterStatement;
use tributary_query::eval::{EvalContext, matches};

use tributary_profile::{IncludeGraph, ProfileState, ProfileView};

/// The account's audiences, parsed, with what each one reads.
#[derive(Default)]
pub struct Audiences {
    /// By slug, for INCLUDE.
    graph: IncludeGraph,
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
        let graph = IncludeGraph::parse(defs);
        let mut list = Vec::with_capacity(defs.len());
        for d in defs {
            let Some(statement) = graph.get(&d.name).cloned() else {
                continue;
            };
            let mut reads = Some(BTreeSet::new());
            let mut time_relative = false;
            for st in graph.reachable(&d.name) {
                match (st.filter.fields(), reads.as_mut()) {
                    (Some(fields), Some(all)) => all.extend(fields),
                    (None, _) => reads = None,
                    (Some(_), None) => {}
                }
                time_relative |= st.filter.is_time_relative();
            }
            list.push(Audience {
                slug: d.name.clone(),
                version: d.updated_at,
                reads,
                time_relative,
                computed: false,
                statement,
            });
        }
        Audiences { graph, list }
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
        self.graph.with_dependents(changed)
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
        let ctx = EvalContext::with_includes(now, self.graph.statements());
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
