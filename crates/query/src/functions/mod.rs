//! The function catalogue (LQL §1.5–1.6, qlbridge builtins §2.7). Names are lower-case; the
//! parser refuses unknown names and wrong argument counts, so evaluation only sees valid calls.
//!
//! A function gets its arguments evaluated (a missing field is `Null`) and returns `None` when
//! it has no result for them (wrong types, unparseable input): the caller treats that like a
//! missing value.

mod collections;
mod dates;
mod strings;
mod web;

use time::OffsetDateTime;

use crate::value::Value;

pub struct FnCtx<'a> {
    /// The evaluation instant: the event's time in LQL, the evaluation time in FilterQL.
    pub now: OffsetDateTime,
    /// All fields of the event or profile, for `match("prefix.")`.
    pub fields: Option<&'a dyn crate::eval::Fields>,
    /// The source fields an LQL mapping reads, for `unmapped()`.
    pub mapped_fields: Option<&'a std::collections::HashSet<String>>,
}

type Impl = fn(&[Value], &FnCtx<'_>) -> Option<Value>;

pub struct Signature {
    pub min_args: usize,
    pub max_args: Option<usize>,
    /// Aggregates combine values across events (count, set, ...): LQL columns only.
    pub aggregate: bool,
    run: Impl,
}

macro_rules! catalogue {
    ($($name:literal => ($min:expr, $max:expr, $agg:expr, $f:path)),* $(,)?) => {
        const CATALOGUE: &[(&str, Signature)] = &[
            $(($name, Signature { min_args: $min, max_args: $max, aggregate: $agg, run: $f })),*
        ];
    };
}

const N: Option<usize> = None;
const fn up_to(n: usize) -> Option<usize> {
    Some(n)
}

catalogue! {
    // aggregates (per-event value; the LQL merge does the combining)
    "count" => (0, up_to(1), true, collections::first_or_one),
    "sum" => (1, up_to(1), true, collections::first_numeric),
    "min" => (1, up_to(1), true, collections::first_arg),
    "max" => (1, up_to(1), true, collections::first_arg),
    "avg" => (1, up_to(1), true, collections::first_numeric),
    "set" => (1, N, true, collections::set),
    "valuect" => (1, up_to(1), true, collections::valuect),
    "map" => (2, up_to(2), true, collections::map),
    "timebucket" => (1, up_to(1), true, dates::todate),
    // logic
    "exists" => (1, up_to(1), false, collections::exists),
    "all" => (1, N, false, collections::all),
    "any" => (2, N, false, collections::any),
    "eq" => (2, up_to(2), false, collections::eq),
    "ne" => (2, up_to(2), false, collections::ne),
    "gt" => (2, up_to(2), false, collections::gt),
    "ge" => (2, up_to(2), false, collections::ge),
    "lt" => (2, up_to(2), false, collections::lt),
    "le" => (2, up_to(2), false, collections::le),
    "not" => (1, up_to(1), false, collections::not),
    "or" => (1, N, false, collections::or),
    "and" => (1, N, false, collections::and),
    "oneof" => (1, N, false, collections::oneof),
    // math
    "ifelse" => (3, up_to(3), false, collections::ifelse),
    "ifcase" => (1, N, false, collections::ifcase),
    "sqrt" => (1, up_to(1), false, collections::sqrt),
    "pow" => (2, up_to(2), false, collections::pow),
    // strings
    "contains" => (2, up_to(2), false, strings::contains),
    "hasprefix" => (2, up_to(2), false, strings::hasprefix),
    "hassuffix" => (2, up_to(2), false, strings::hassuffix),
    "join" => (1, N, false, strings::join),
    "len" => (1, up_to(1), false, strings::len),
    "char_length" => (1, up_to(1), false, strings::len),
    "replace" => (2, up_to(3), false, strings::replace),
    "split" => (2, up_to(2), false, strings::split),
    "string.split" => (2, up_to(2), false, strings::split),
    "strip" => (1, up_to(1), false, strings::strip),
    "string.strip" => (1, up_to(1), false, strings::strip),
    "tolower" => (1, up_to(1), false, strings::lower),
    "string.lowercase" => (1, up_to(1), false, strings::lower),
    "toupper" => (1, up_to(1), false, strings::upper),
    "string.uppercase" => (1, up_to(1), false, strings::upper),
    "string.titlecase" => (1, up_to(1), false, strings::titlecase),
    "string.index" => (2, up_to(2), false, strings::index),
    "string.substr" => (2, up_to(3), false, strings::substr),
    "tostring" => (1, up_to(1), false, strings::tostring),
    // hashing and encoding
    "hash" => (1, up_to(1), false, strings::hash_sip),
    "hash.sip" => (1, up_to(1), false, strings::hash_sip),
    "hash.md5" => (1, up_to(1), false, strings::hash_md5),
    "hash.sha1" => (1, up_to(1), false, strings::hash_sha1),
    "hash.sha256" => (1, up_to(1), false, strings::hash_sha256),
    "hash.sha512" => (1, up_to(1), false, strings::hash_sha512),
    "encoding.b64encode" => (1, up_to(1), false, strings::b64encode),
    "encoding.b64decode" => (1, up_to(1), false, strings::b64decode),
    "uuid" => (0, up_to(0), false, strings::uuid),
    "json.jmespath" => (2, up_to(2), false, web::jmespath),
    "ipfilter" => (2, N, false, web::ipfilter),
    // casts
    "toint" => (1, up_to(1), false, collections::toint),
    "tonumber" => (1, up_to(1), false, collections::tonumber),
    "tobool" => (1, up_to(1), false, collections::tobool),
    "unsign" => (1, up_to(1), false, collections::unsign),
    "cast" => (2, up_to(2), false, collections::cast),
    // dates
    "now" => (0, up_to(0), false, dates::now),
    "epochms" => (0, up_to(0), false, dates::epochms),
    "todate" => (1, up_to(2), false, dates::todate),
    "todatein" => (2, up_to(2), false, dates::todatein),
    "totimestamp" => (1, up_to(1), false, dates::totimestamp),
    "yy" => (0, up_to(1), false, dates::yy),
    "yymm" => (0, up_to(1), false, dates::yymm),
    "mm" => (0, up_to(1), false, dates::monthofyear),
    "monthofyear" => (0, up_to(1), false, dates::monthofyear),
    "dayofweek" => (0, up_to(1), false, dates::dayofweek),
    "hourofday" => (0, up_to(1), false, dates::hourofday),
    "hourofweek" => (0, up_to(1), false, dates::hourofweek),
    "seconds" => (1, up_to(1), false, dates::seconds),
    "extract" => (2, up_to(2), false, dates::strftime),
    "strftime" => (2, up_to(2), false, dates::strftime),
    "unixtrunc" => (1, up_to(2), false, dates::unixtrunc),
    "maptime" => (1, up_to(2), false, dates::maptime),
    "daysago" => (1, up_to(1), false, dates::daysago),
    // maps and arrays
    "match" => (1, N, false, collections::match_prefix),
    "unmapped" => (0, up_to(0), false, collections::unmapped),
    "mapkeys" => (1, up_to(1), false, collections::mapkeys),
    "mapvalues" => (1, up_to(1), false, collections::mapvalues),
    "mapinvert" => (1, up_to(1), false, collections::mapinvert),
    "filter" => (2, N, false, collections::filter_out),
    "filtermatch" => (2, N, false, collections::filter_match),
    "array.index" => (2, up_to(2), false, collections::array_index),
    "array.slice" => (2, up_to(3), false, collections::array_slice),
    // web: email, URLs, user agents
    "email" => (1, up_to(1), false, web::email),
    "emailname" => (1, up_to(1), false, web::emailname),
    "emaildomain" => (1, up_to(1), false, web::emaildomain),
    "domain" => (1, up_to(1), false, web::domain),
    "domains" => (1, N, false, web::domains),
    "host" => (1, up_to(1), false, web::host),
    "hosts" => (1, N, false, web::hosts),
    "path" => (1, up_to(1), false, web::path),
    "qs" => (2, up_to(2), false, web::qs_lower),
    "qsl" => (2, up_to(2), false, web::qs_lower),
    "qs2" => (2, up_to(2), false, web::qs),
    "url.matchqs" => (2, N, false, web::matchqs),
    "urldecode" => (1, up_to(1), false, web::urldecode),
    "urlmain" => (1, up_to(1), false, web::urlmain),
    "urlminusqs" => (2, N, false, web::urlminusqs),
    "useragent" => (2, up_to(2), false, web::useragent),
    "useragent.map" => (1, up_to(1), false, web::useragent_map),
}

static BY_NAME: std::sync::LazyLock<std::collections::HashMap<&'static str, &'static Signature>> =
    std::sync::LazyLock::new(|| CATALOGUE.iter().map(|(n, s)| (*n, s)).collect());

pub fn signature(name: &str) -> Option<&'static Signature> {
    BY_NAME.get(name).copied()
}

/// Names of every function, for documentation and error messages.
pub fn names() -> impl Iterator<Item = &'static str> {
    CATALOGUE.iter().map(|(n, _)| *n)
}

pub fn call(name: &str, args: &[Value], ctx: &FnCtx<'_>) -> Option<Value> {
    signature(name).and_then(|s| (s.run)(args, ctx))
}

/// The text of an argument, when it has one.
fn text(v: &Value) -> Option<String> {
    match v {
        Value::Null | Value::Array(_) | Value::Map(_) => None,
        other => Some(other.to_text()),
    }
}
