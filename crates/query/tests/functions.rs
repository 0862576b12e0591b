//! The function catalogue, table-driven: `expression => expected value` against one event.

use std::collections::HashMap;

use serde_json::json;
use time::macros::datetime;
use tributary_query::eval::evaluate_value;
use tributary_query::{EvalContext, Value, parse_expr};

fn event() -> HashMap<String, Value> {
    let e = json!({
        "name": "  Luke Skywalker ",
        "first": "luke",
        "email_raw": "Luke S <Luke@Rebels.ORG>",
        "url": "https://www.Example.co.uk/blog/post?utm_source=News&id=7#top",
        "bare_url": "www.lytics.com/blog/?a=1",
        "csv": "a,b,c",
        "tags": ["orange", "apple", "orchid"],
        "nums": ["1", "2", "x"],
        "hits": {"foo": 2, "bar": 3},
        "user.name": "flat dotted",
        "user.city": "Paris",
        "ts": "2024-03-05T14:30:00Z",
        "amount": "$1,200",
        "zero": 0,
        "ua": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Version/17.0 Mobile/15E148 Safari/604.1",
        "bot_ua": "Googlebot/2.1 (+http://www.google.com/bot.html)",
        "b64": "aGVsbG8=",
        "empty": "",
        "t": "true",
    });
    match Value::from_json(&e) {
        Value::Map(m) => m.into_iter().collect(),
        _ => unreachable!(),
    }
}

fn s(v: &str) -> Option<Value> {
    Some(Value::String(v.into()))
}
fn i(v: i64) -> Option<Value> {
    Some(Value::Int(v))
}
fn b(v: bool) -> Option<Value> {
    Some(Value::Bool(v))
}
fn strings(v: &[&str]) -> Option<Value> {
    Some(Value::Array(
        v.iter().map(|x| Value::String(x.to_string())).collect(),
    ))
}

#[test]
fn catalogue() {
    let now = datetime!(2024-03-10 12:00 UTC);
    let cases: Vec<(&str, Option<Value>)> = vec![
        // strings
        ("tolower(\"AbC\")", s("abc")),
        ("string.lowercase(\"AbC\")", s("abc")),
        ("string.uppercase(first)", s("LUKE")),
        ("toupper(first)", s("LUKE")),
        ("string.titlecase(\"hello wORLD\")", s("Hello World")),
        ("strip(name)", s("Luke Skywalker")),
        ("string.strip(name)", s("Luke Skywalker")),
        ("len(first)", i(4)),
        ("len(tags)", i(3)),
        ("char_length(\"héllo\")", i(5)),
        ("contains(first, \"uk\")", b(true)),
        ("hasprefix(first, \"lu\")", b(true)),
        ("hassuffix(first, \"ke\")", b(true)),
        ("hassuffix(first, \"x\")", b(false)),
        ("join(first, \"skywalker\", \"-\")", s("luke-skywalker")),
        ("join(tags, \",\")", s("orange,apple,orchid")),
        ("split(csv, \",\")", strings(&["a", "b", "c"])),
        ("string.split(csv, \",\")", strings(&["a", "b", "c"])),
        ("replace(csv, \",\")", s("abc")),
        ("replace(csv, \",\", \";\")", s("a;b;c")),
        ("string.index(first, \"k\")", i(2)),
        ("string.index(first, \"z\")", i(-1)),
        ("string.substr(first, 1, 3)", s("uk")),
        ("string.substr(first, -2)", s("ke")),
        ("oneof(missing, empty, first)", s("luke")),
        ("tostring(zero)", s("0")),
        // hashing and encoding
        ("hash.md5(\"hello\")", s("5d41402abc4b2a76b9719d911017c592")),
        (
            "hash.sha1(\"hello\")",
            s("aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d"),
        ),
        (
            "hash.sha256(\"hello\")",
            s("2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"),
        ),
        ("len(hash.sha512(\"hello\"))", i(128)),
        ("hash.sip(\"hello\") == hash.sip(\"hello\")", b(true)),
        ("encoding.b64encode(\"hello\")", s("aGVsbG8=")),
        ("encoding.b64decode(b64)", s("hello")),
        // casts
        ("toint(\"42\")", i(42)),
        ("toint(amount)", i(1200)),
        ("toint(\"4.7\")", i(4)),
        (
            "toint(nums)",
            Some(Value::Array(vec![Value::Int(1), Value::Int(2)])),
        ),
        ("toint(\"abc\")", None),
        ("tonumber(\"2.5\")", Some(Value::Number(2.5))),
        ("tobool(t)", b(true)),
        ("tobool(\"f\")", b(false)),
        ("tobool(\"maybe\")", None),
        ("cast(\"12\", \"int\")", i(12)),
        ("unsign(-5)", i(5)),
        // logic
        ("exists(first)", b(true)),
        ("exists(missing)", b(false)),
        ("any(first, \"han\", \"luke\")", b(true)),
        ("all(first, name)", b(true)),
        ("all(first, missing)", b(false)),
        ("eq(zero, 0)", b(true)),
        ("gt(2, 1)", b(true)),
        ("not(false)", b(true)),
        ("sqrt(16)", Some(Value::Number(4.0))),
        ("pow(2, 10)", Some(Value::Number(1024.0))),
        // email and URLs
        ("email(email_raw)", s("luke@rebels.org")),
        ("email(\"not an email\")", None),
        ("emailname(email_raw)", s("luke")),
        ("emaildomain(email_raw)", s("rebels.org")),
        ("domain(url)", s("example.co.uk")),
        ("domain(bare_url)", s("lytics.com")),
        ("host(url)", s("www.example.co.uk")),
        ("path(url)", s("/blog/post")),
        ("qs(url, \"utm_source\")", s("news")),
        ("qs2(url, \"utm_source\")", s("News")),
        ("qs(url, \"nope\")", None),
        ("urlmain(bare_url)", s("www.lytics.com/blog/")),
        (
            "urlminusqs(url, \"utm_source\")",
            s("www.Example.co.uk/blog/post?id=7"),
        ),
        (
            "url.matchqs(url, \"utm_*\")",
            s("www.Example.co.uk/blog/post?utm_source=News"),
        ),
        ("urldecode(\"a%20b+c\")", s("a b c")),
        ("useragent(ua, \"mobile\")", b(true)),
        ("useragent(ua, \"os\")", s("iOS")),
        ("useragent(ua, \"browser\")", s("Safari")),
        ("useragent(bot_ua, \"bot\")", b(true)),
        // dates (now is 2024-03-10T12:00Z)
        (
            "todate(ts)",
            Some(Value::Time(datetime!(2024-03-05 14:30 UTC))),
        ),
        (
            "todate(\"now-3d\")",
            Some(Value::Time(datetime!(2024-03-07 12:00 UTC))),
        ),
        (
            "todate(\"02/01/2006\", \"05/03/2024\")",
            Some(Value::Time(datetime!(2024-03-05 0:00 UTC))),
        ),
        (
            "todate(\"2006-01-02 15:04\", \"2024-03-05 14:30\")",
            Some(Value::Time(datetime!(2024-03-05 14:30 UTC))),
        ),
        (
            "todatein(\"2024-03-05 14:30:00\", \"+02:00\")",
            Some(Value::Time(datetime!(2024-03-05 12:30 UTC))),
        ),
        ("totimestamp(ts)", i(1_709_649_000)),
        ("now()", Some(Value::Time(now))),
        ("epochms()", i(1_710_072_000_000)),
        ("yy(ts)", i(24)),
        ("yymm(ts)", s("2403")),
        ("mm(ts)", i(3)),
        ("monthofyear(ts)", i(3)),
        ("dayofweek(ts)", i(2)),
        ("hourofday(ts)", i(14)),
        ("hourofweek(ts)", i(62)),
        ("seconds(\"10:30\")", i(630)),
        ("seconds(\"1:00:00\")", i(3600)),
        (
            "extract(ts, \"%B %d, %Y %H:%M\")",
            s("March 05, 2024 14:30"),
        ),
        ("strftime(ts, \"%a %b %j\")", s("Tue Mar 065")),
        ("unixtrunc(ts)", s("1709649000")),
        ("unixtrunc(ts, \"milliseconds\")", s("1709649000000")),
        ("daysago(ts)", i(4)),
        // maps and arrays
        ("mapkeys(hits)", strings(&["bar", "foo"])),
        (
            "mapvalues(hits)",
            Some(Value::Array(vec![Value::Int(3), Value::Int(2)])),
        ),
        ("filter(tags, \"or*\")", strings(&["apple"])),
        ("filtermatch(tags, \"or*\")", strings(&["orange", "orchid"])),
        ("array.index(tags, 1)", s("apple")),
        ("array.index(tags, -1)", s("orchid")),
        ("array.index(tags, 9)", None),
        ("array.slice(tags, 1)", strings(&["apple", "orchid"])),
        ("array.slice(tags, 0, 2)", strings(&["orange", "apple"])),
        ("len(match(\"user.\"))", i(2)),
        ("user.city", s("Paris")),
        // conditionals, network, JSON, ids
        (
            "ifcase(\"a\" IF zero == 1, \"b\" IF zero == 0, \"c\")",
            s("b"),
        ),
        ("ifcase(\"a\" IF zero == 1, \"c\")", s("c")),
        ("ifcase(\"a\" IF zero == 1)", None),
        ("ifelse(zero == 0, \"yes\", \"no\")", s("yes")),
        (
            "ipfilter(\"10.1.2.3\", \"192.168.0.0/16\", \"10.0.0.0/8\")",
            b(true),
        ),
        ("ipfilter(\"10.1.2.3\", \"10.1.2.4\")", b(false)),
        ("ipfilter(\"2001:db8::1\", \"2001:db8::/32\")", b(true)),
        (
            "json.jmespath(\"{\\\"a\\\": {\\\"b\\\": [1, {\\\"c\\\": \\\"x\\\"}]}}\", \"a.b[1].c\")",
            s("x"),
        ),
        ("json.jmespath(hits, \"foo\")", i(2)),
        ("len(uuid())", i(36)),
        (
            "todatein(\"2024-07-01 09:00:00\", \"America/Los_Angeles\")",
            Some(Value::Time(datetime!(2024-07-01 16:00 UTC))),
        ),
        (
            "todatein(\"2024-01-15 09:00:00\", \"Europe/Paris\")",
            Some(Value::Time(datetime!(2024-01-15 8:00 UTC))),
        ),
        ("todatein(\"2024-01-15 09:00:00\", \"Mars/Olympus\")", None),
    ];
    let fields = event();
    let ctx = EvalContext::at(now);
    for (text, want) in cases {
        let e = parse_expr(text).unwrap_or_else(|err| panic!("{text}: {err}"));
        assert_eq!(evaluate_value(&e, &fields, &ctx), want, "{text}");
    }
}

#[test]
fn every_function_in_the_catalogue_is_callable_without_panicking() {
    let ctx = EvalContext::at(datetime!(2024-03-10 12:00 UTC));
    let fields = event();
    let args = [
        "first",
        "tags",
        "hits",
        "missing",
        "zero",
        "\"\"",
        "ts",
        "-1",
        "\"now-1d\"",
    ];
    for name in tributary_query::functions::names() {
        let sig = tributary_query::functions::signature(name).unwrap();
        if sig.aggregate {
            continue;
        }
        for n in sig.min_args..=sig.max_args.unwrap_or(sig.min_args + 2).min(3) {
            for a in args {
                let call = format!("{name}({})", vec![a; n].join(", "));
                let e = parse_expr(&call).unwrap_or_else(|err| panic!("{call}: {err}"));
                let _ = evaluate_value(&e, &fields, &ctx);
            }
        }
    }
}
