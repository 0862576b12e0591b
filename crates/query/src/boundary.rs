//! When can a date-relative filter change its result? For `last_seen > "now-30d"` and a
//! profile whose `last_seen` is t, the answer flips when now-30d reaches t, that is at
//! t + 30d. The audiences engine schedules the profile's next check at the earliest such
//! instant instead of rescanning everything on a timer.

use time::{Duration, OffsetDateTime};

use crate::ast::{CmpOp, Expr, Literal};
use crate::dates::DateMath;
use crate::eval::{EvalContext, Fields, evaluate_value};
use crate::value::Value;

const EPSILON: Duration = Duration::microseconds(1);

/// The earliest instant after `ctx.now` at which `filter`'s result for `fields` can change
/// because time passed; `None` when it cannot (no date math, or every boundary is past).
pub fn next_change(
    filter: &Expr,
    fields: &dyn Fields,
    ctx: &EvalContext<'_>,
) -> Option<OffsetDateTime> {
    let mut best: Option<OffsetDateTime> = None;
    visit(filter, fields, ctx, &mut best, 0);
    best
}

fn consider(best: &mut Option<OffsetDateTime>, candidate: OffsetDateTime, now: OffsetDateTime) {
    if candidate > now && best.is_none_or(|b| candidate < b) {
        *best = Some(candidate);
    }
}

fn times_of(e: &Expr, fields: &dyn Fields, ctx: &EvalContext<'_>) -> Vec<OffsetDateTime> {
    match evaluate_value(e, fields, ctx) {
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_time).collect(),
        Some(v) => v.as_time().into_iter().collect(),
        None => Vec::new(),
    }
}

/// `value OP (now + offsets)`: when does it flip?
fn compare_boundary(op: CmpOp, dm: &DateMath, t: OffsetDateTime) -> Option<OffsetDateTime> {
    let c = dm.when_equal_to(t);
    match op {
        // t > now+off holds while now < c; t <= now+off holds from c on.
        CmpOp::Gt | CmpOp::Le => Some(c),
        // t >= now+off holds while now <= c; t < now+off holds after c.
        CmpOp::Ge | CmpOp::Lt => Some(c + EPSILON),
        // Equality with a moving instant has no useful boundary.
        CmpOp::Eq | CmpOp::Ne => None,
    }
}

fn visit(
    e: &Expr,
    fields: &dyn Fields,
    ctx: &EvalContext<'_>,
    best: &mut Option<OffsetDateTime>,
    depth: usize,
) {
    if depth > 32 {
        return;
    }
    match e {
        Expr::Compare(op, lhs, rhs) => {
            if let Expr::Literal(Literal::DateMath(dm)) = rhs.as_ref() {
                for t in times_of(lhs, fields, ctx) {
                    if let Some(c) = compare_boundary(*op, dm, t) {
                        consider(best, c, ctx.now);
                    }
                }
            }
        }
        Expr::Between(x, lo, hi) => {
            for t in times_of(x, fields, ctx) {
                if let Expr::Literal(Literal::DateMath(dm)) = lo.as_ref()
                    && let Some(c) = compare_boundary(CmpOp::Gt, dm, t)
                {
                    consider(best, c, ctx.now);
                }
                if let Expr::Literal(Literal::DateMath(dm)) = hi.as_ref()
                    && let Some(c) = compare_boundary(CmpOp::Lt, dm, t)
                {
                    consider(best, c, ctx.now);
                }
            }
        }
        Expr::And(items) | Expr::Or(items) => {
            for i in items {
                visit(i, fields, ctx, best, depth + 1);
            }
        }
        Expr::Not(inner) => visit(inner, fields, ctx, best, depth + 1),
        Expr::Include(name) => {
            if let Some(st) = ctx.includes.and_then(|i| i.include(name)) {
                visit(&st.filter, fields, ctx, best, depth + 1);
            }
        }
        _ => {}
    }
}
