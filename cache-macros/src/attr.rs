//! Step 1: the attribute's options, parsed into a typed model. Every option
//! keeps its span so later steps point errors at the user's token. Parsing
//! reports every problem it finds and keeps going.

use crate::ctxt::Ctxt;
use proc_macro2::{Span, TokenStream};
use syn::meta::ParseNestedMeta;
use syn::spanned::Spanned as _;
use syn::{Expr, Lit, LitStr};

/// Which attribute is being expanded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Cached,
    CachePut,
    CacheEvict,
    RateLimit,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Cached => "cached",
            Kind::CachePut => "cache_put",
            Kind::CacheEvict => "cache_evict",
            Kind::RateLimit => "rate_limit",
        }
    }

    /// The options this attribute accepts.
    fn allowed(self) -> &'static [&'static str] {
        match self {
            Kind::Cached => &[
                TTL,
                PREFIX,
                NAME,
                KEY,
                CACHE,
                ENCRYPT,
                COMPRESS,
                CODEC,
                CACHE_ERR,
                CACHE_NONE,
                UNLESS,
                JITTER,
                REFRESH_AHEAD,
                STALE_IF_ERROR,
                LOCK,
                CRATE,
            ],
            Kind::CachePut => &[
                TTL, PREFIX, NAME, KEY, VALUE, CACHE, ENCRYPT, COMPRESS, CODEC, JITTER, CRATE,
            ],
            Kind::CacheEvict => &[PREFIX, NAME, KEY, CACHE, ENCRYPT, ALL_ENTRIES, BEFORE_INVOCATION, CRATE],
            Kind::RateLimit => &[KEY, RATE, BURST, ALGORITHM, STORE, CRATE],
        }
    }
}

pub const TTL: &str = "ttl";
pub const PREFIX: &str = "prefix";
pub const NAME: &str = "name";
pub const KEY: &str = "key";
pub const CACHE: &str = "cache";
pub const ENCRYPT: &str = "encrypt";
pub const COMPRESS: &str = "compress";
pub const CODEC: &str = "codec";
pub const CACHE_ERR: &str = "cache_err";
pub const CACHE_NONE: &str = "cache_none";
pub const UNLESS: &str = "unless";
pub const JITTER: &str = "jitter";
pub const REFRESH_AHEAD: &str = "refresh_ahead";
pub const STALE_IF_ERROR: &str = "stale_if_error";
pub const LOCK: &str = "lock";
pub const CRATE: &str = "crate";
pub const VALUE: &str = "value";
pub const ALL_ENTRIES: &str = "all_entries";
pub const BEFORE_INVOCATION: &str = "before_invocation";
pub const RATE: &str = "rate";
pub const BURST: &str = "burst";
pub const ALGORITHM: &str = "algorithm";
pub const STORE: &str = "store";

/// `algorithm = "..."` of `#[rate_limit]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Gcra,
    FixedWindow,
    SlidingWindow,
}

const ALGORITHMS: &[(&str, Algorithm)] = &[
    ("gcra", Algorithm::Gcra),
    ("fixed_window", Algorithm::FixedWindow),
    ("sliding_window", Algorithm::SlidingWindow),
];

/// `rate = "100/m"`: requests per period.
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    pub count: u32,
    pub period_ms: u64,
}

/// `codec = "..."`: how stored values are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    MsgPack,
    Json,
    Pickle,
    Raw,
}

const CODECS: &[(&str, Codec)] = &[
    ("msgpack", Codec::MsgPack),
    ("json", Codec::Json),
    ("pickle", Codec::Pickle),
    ("raw", Codec::Raw),
];

/// `lock = "..."`: how concurrent misses of one key are coalesced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lock {
    Local,
    Distributed,
    None,
}

const LOCKS: &[(&str, Lock)] = &[
    ("local", Lock::Local),
    ("distributed", Lock::Distributed),
    ("none", Lock::None),
];

/// A value with the span of the option that set it.
#[derive(Debug, Clone)]
pub struct Spanned<T> {
    pub value: T,
    pub span: Span,
}

/// One piece of a `key = "..."` template.
#[derive(Debug, Clone)]
pub enum Segment {
    Text(String),
    /// `{user.id}`: the root argument and the path after it.
    Arg {
        root: String,
        path: Vec<String>,
    },
}

/// Where the cache comes from.
#[derive(Debug, Clone)]
pub enum CacheOpt {
    Named(String),
    Expr(Box<Expr>),
}

/// A parsed `key` template.
#[derive(Debug, Clone)]
pub struct Template {
    pub segments: Vec<Segment>,
    pub lit: LitStr,
}

/// The options of one attribute, as written.
#[derive(Debug, Default)]
pub struct Options {
    pub ttl_ms: Option<Spanned<u64>>,
    pub prefix: Option<Spanned<String>>,
    pub name: Option<Spanned<String>>,
    pub key: Option<Template>,
    pub cache: Option<Spanned<CacheOpt>>,
    pub encrypt: Option<Span>,
    pub compress: Option<Span>,
    pub codec: Option<Spanned<Codec>>,
    pub cache_err: Option<Span>,
    pub cache_none: Option<Span>,
    pub unless: Option<Spanned<Box<Expr>>>,
    pub jitter_ms: Option<Spanned<u64>>,
    pub refresh_beta: Option<Spanned<f64>>,
    pub stale_ms: Option<Spanned<u64>>,
    pub lock: Option<Spanned<Lock>>,
    pub krate: Option<syn::Path>,
    pub value: Option<Spanned<Box<Expr>>>,
    pub all_entries: Option<Span>,
    pub before_invocation: Option<Span>,
    pub rate: Option<Spanned<Rate>>,
    pub burst: Option<Spanned<u32>>,
    pub algorithm: Option<Spanned<Algorithm>>,
    pub store: Option<Spanned<String>>,
}

/// Parses the attribute's arguments, reporting problems into `cx`.
pub fn parse(kind: Kind, args: TokenStream, cx: &Ctxt) -> Options {
    let mut opts = Options::default();
    let mut seen = Vec::new();
    let parser = syn::meta::parser(|meta| {
        let name = option_name(&meta.path);
        if seen.contains(&name) {
            cx.error(meta.path.span(), format!("`{name}` is given more than once; keep one"));
            skip_value(&meta, cx);
            return Ok(());
        }
        seen.push(name);
        parse_one(kind, &meta, &mut opts, cx);
        Ok(())
    });
    if let Err(err) = syn::parse::Parser::parse2(parser, args) {
        cx.syn_error(err);
    }
    opts
}

/// An option's name as written (`ttl`, `crate`, or a whole path).
fn option_name(path: &syn::Path) -> String {
    path.get_ident()
        .map(|i| i.to_string())
        .or_else(|| path.is_ident("crate").then(|| "crate".to_owned()))
        .unwrap_or_else(|| quote::quote!(#path).to_string().replace(' ', ""))
}

fn parse_one(kind: Kind, meta: &ParseNestedMeta<'_>, opts: &mut Options, cx: &Ctxt) {
    let path = &meta.path;
    let span = path.span();
    let name = option_name(path);
    let has_value = meta.input.peek(syn::Token![=]);
    if !kind.allowed().contains(&name.as_str()) {
        let expected = kind
            .allowed()
            .iter()
            .map(|o| format!("`{o}`"))
            .collect::<Vec<_>>()
            .join(", ");
        cx.error(
            span,
            format!(
                "unknown option `{name}` of #[{}]; expected one of: {expected}",
                kind.name()
            ),
        );
        skip_value(meta, cx);
        return;
    }
    let flag = |cx: &Ctxt| -> Option<Span> {
        if has_value {
            cx.error(span, format!("`{name}` is a flag: write `{name}` without a value"));
            skip_value(meta, cx);
            None
        } else {
            Some(span)
        }
    };
    let value = |cx: &Ctxt| -> Option<Expr> {
        if !has_value {
            cx.error(span, format!("`{name}` needs a value: `{name} = ...`"));
            return None;
        }
        match meta.value().and_then(|v| v.parse::<Expr>()) {
            Ok(expr) => Some(expr),
            Err(err) => {
                cx.syn_error(err);
                None
            }
        }
    };
    match name.as_str() {
        TTL | JITTER | STALE_IF_ERROR => {
            let Some(expr) = value(cx) else { return };
            let Some(ms) = duration_ms(&name, &expr, cx) else {
                return;
            };
            let slot = Spanned {
                value: ms,
                span: expr.span(),
            };
            match name.as_str() {
                TTL => {
                    if ms == 0 {
                        cx.error(
                            expr.span(),
                            "`ttl` must be greater than zero; leave it out for no expiry",
                        );
                    }
                    opts.ttl_ms = Some(slot)
                }
                JITTER => opts.jitter_ms = Some(slot),
                _ => opts.stale_ms = Some(slot),
            }
        }
        RATE => {
            let Some(expr) = value(cx) else { return };
            let Some(text) = string(RATE, &expr, cx) else { return };
            // A bad rate is still a given `rate`: its error is enough.
            let rate = parse_rate(&text.value()).unwrap_or_else(|why| {
                cx.error(
                    text.span(),
                    format!(
                        "`rate = \"{}\"` {why}; write `<count>/<period>`, e.g. `100/m`, `10/s`, `5/30s`",
                        text.value()
                    ),
                );
                Rate {
                    count: 1,
                    period_ms: 1_000,
                }
            });
            opts.rate = Some(Spanned {
                value: rate,
                span: text.span(),
            });
        }
        BURST => {
            let Some(expr) = value(cx) else { return };
            match &expr {
                Expr::Lit(syn::ExprLit { lit: Lit::Int(i), .. }) => match i.base10_parse::<u32>() {
                    Ok(burst) if burst >= 1 => {
                        opts.burst = Some(Spanned {
                            value: burst,
                            span: i.span(),
                        })
                    }
                    _ => cx.error(i.span(), "`burst` must be a whole number from 1 to 4294967295"),
                },
                _ => cx.error(expr.span(), "`burst` takes an integer literal, e.g. `burst = 10`"),
            }
        }
        PREFIX | NAME | CODEC | LOCK | ALGORITHM | STORE => {
            let Some(expr) = value(cx) else { return };
            let Some(text) = string(&name, &expr, cx) else { return };
            let slot = Spanned {
                value: text.value(),
                span: text.span(),
            };
            match name.as_str() {
                PREFIX => opts.prefix = Some(slot),
                NAME => opts.name = Some(slot),
                CODEC => opts.codec = choice(CODEC, &slot, CODECS, cx),
                LOCK => opts.lock = choice(LOCK, &slot, LOCKS, cx),
                STORE => opts.store = Some(slot),
                _ => {
                    let slot = Spanned {
                        value: slot.value.replace('-', "_"),
                        span: slot.span,
                    };
                    opts.algorithm = choice(ALGORITHM, &slot, ALGORITHMS, cx);
                }
            }
        }
        KEY => {
            let Some(expr) = value(cx) else { return };
            let Some(lit) = string(KEY, &expr, cx) else { return };
            // A broken template is still a given `key`: its error is enough.
            let segments = parse_template(&lit, cx).unwrap_or_default();
            opts.key = Some(Template { segments, lit });
        }
        CACHE => {
            let Some(expr) = value(cx) else { return };
            let cache = match &expr {
                Expr::Lit(syn::ExprLit { lit: Lit::Str(s), .. }) => CacheOpt::Named(s.value()),
                _ => CacheOpt::Expr(Box::new(expr.clone())),
            };
            opts.cache = Some(Spanned {
                value: cache,
                span: expr.span(),
            });
        }
        UNLESS | VALUE => {
            let Some(expr) = value(cx) else { return };
            let slot = Spanned {
                span: expr.span(),
                value: Box::new(expr),
            };
            if name == UNLESS {
                opts.unless = Some(slot);
            } else {
                opts.value = Some(slot);
            }
        }
        REFRESH_AHEAD => {
            if !has_value {
                opts.refresh_beta = Some(Spanned { value: 1.0, span });
                return;
            }
            let Some(expr) = value(cx) else { return };
            let beta = match &expr {
                Expr::Lit(syn::ExprLit { lit: Lit::Float(f), .. }) => f.base10_parse::<f64>().ok(),
                Expr::Lit(syn::ExprLit { lit: Lit::Int(i), .. }) => i.base10_parse::<u32>().ok().map(f64::from),
                _ => None,
            };
            match beta {
                Some(beta) if beta > 0.0 => opts.refresh_beta = Some(Spanned { value: beta, span: expr.span() }),
                _ => cx.error(
                    expr.span(),
                    "`refresh_ahead` takes no value, or a positive number (the XFetch beta, e.g. `refresh_ahead = 2.0`)",
                ),
            }
        }
        CRATE => {
            let Some(expr) = value(cx) else { return };
            let Some(lit) = string(CRATE, &expr, cx) else { return };
            match lit.parse::<syn::Path>() {
                Ok(path) => opts.krate = Some(path),
                Err(_) => cx.error(lit.span(), "`crate` must be a path, e.g. `crate = \"my_app::memorix\"`"),
            }
        }
        ENCRYPT => opts.encrypt = flag(cx),
        COMPRESS => opts.compress = flag(cx),
        CACHE_ERR => opts.cache_err = flag(cx),
        CACHE_NONE => opts.cache_none = flag(cx),
        ALL_ENTRIES => opts.all_entries = flag(cx),
        BEFORE_INVOCATION => opts.before_invocation = flag(cx),
        _ => cx.error(span, format!("option `{name}` is not handled")),
    }
}

/// Looks `slot` up in `table`, the one place a choice's spelling is checked.
fn choice<T: Copy>(name: &str, slot: &Spanned<String>, table: &[(&str, T)], cx: &Ctxt) -> Option<Spanned<T>> {
    match table.iter().find(|(spelling, _)| *spelling == slot.value) {
        Some((_, value)) => Some(Spanned {
            value: *value,
            span: slot.span,
        }),
        None => {
            let expected = table
                .iter()
                .map(|(s, _)| format!("\"{s}\""))
                .collect::<Vec<_>>()
                .join(", ");
            cx.error(
                slot.span,
                format!("unknown {name} `{}`; expected one of: {expected}", slot.value),
            );
            None
        }
    }
}

fn skip_value(meta: &ParseNestedMeta<'_>, cx: &Ctxt) {
    if meta.input.peek(syn::Token![=]) {
        if let Err(err) = meta.value().and_then(|v| v.parse::<Expr>()) {
            cx.syn_error(err);
        }
    }
}

fn string(name: &str, expr: &Expr, cx: &Ctxt) -> Option<LitStr> {
    match expr {
        Expr::Lit(syn::ExprLit { lit: Lit::Str(s), .. }) => Some(s.clone()),
        _ => {
            cx.error(
                expr.span(),
                format!("`{name}` expects a string literal, e.g. `{name} = \"...\"`"),
            );
            None
        }
    }
}

/// `60` (seconds) or `"1h30m"`, in milliseconds.
fn duration_ms(name: &str, expr: &Expr, cx: &Ctxt) -> Option<u64> {
    let wrong = || {
        cx.error(
            expr.span(),
            format!("`{name}` expects seconds as an integer (`{name} = 60`) or a duration string (`{name} = \"5m\"`, \"90s\", \"1h30m\")"),
        )
    };
    match expr {
        Expr::Lit(syn::ExprLit { lit: Lit::Int(i), .. }) => match i.base10_parse::<u64>() {
            Ok(secs) => secs.checked_mul(1000).or_else(|| {
                wrong();
                None
            }),
            Err(_) => {
                wrong();
                None
            }
        },
        Expr::Lit(syn::ExprLit { lit: Lit::Str(s), .. }) => match parse_duration(&s.value()) {
            Some(ms) => Some(ms),
            None => {
                cx.error(
                    s.span(),
                    format!(
                        "`{}` is not a duration; write e.g. \"250ms\", \"30s\", \"5m\", \"1h30m\"",
                        s.value()
                    ),
                );
                None
            }
        },
        _ => {
            wrong();
            None
        }
    }
}

/// The grammar of `memorix::ratelimit::Rate::parse`, read at compile time:
/// `<count>/<period>`, the period a unit (`s`, `m`, ...) or a duration.
fn parse_rate(text: &str) -> Result<Rate, &'static str> {
    let (count, period) = text.split_once('/').ok_or("has no `/`")?;
    let count = match count.trim().parse::<u32>() {
        Ok(0) => return Err("allows 0 requests"),
        Ok(count) => count,
        Err(_) => return Err("does not start with a whole number"),
    };
    let period = period.trim();
    let period = if matches!(period, "ms" | "s" | "m" | "h" | "d") {
        format!("1{period}")
    } else {
        period.to_owned()
    };
    match parse_duration(&period) {
        Some(0) => Err("has a zero period"),
        Some(period_ms) => Ok(Rate { count, period_ms }),
        None => Err("has an unknown period"),
    }
}

/// The runtime's duration grammar, checked at compile time.
fn parse_duration(text: &str) -> Option<u64> {
    crate::duration_grammar::parse_millis(text)
}

/// `"user:{user.id}:{lang}"` → text and argument segments. `{{` / `}}` escape braces.
fn parse_template(lit: &LitStr, cx: &Ctxt) -> Option<Vec<Segment>> {
    let text = lit.value();
    let mut segments = Vec::new();
    let mut chars = text.chars().peekable();
    let mut buf = String::new();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                buf.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                buf.push('}');
            }
            '{' => {
                let mut inner = String::new();
                let mut closed = false;
                for c in chars.by_ref() {
                    if c == '}' {
                        closed = true;
                        break;
                    }
                    inner.push(c);
                }
                if !closed {
                    cx.error(
                        lit.span(),
                        "`key` has a `{` without its `}`; write `{{` for a literal brace",
                    );
                    return None;
                }
                let mut parts = inner.trim().split('.').map(str::trim);
                let root = parts.next().unwrap_or_default().to_owned();
                let path: Vec<String> = parts.map(str::to_owned).collect();
                let ident_ok = |s: &str| {
                    !s.is_empty()
                        && (s.chars().all(|c| c.is_ascii_digit())
                            || (s.chars().all(|c| c.is_alphanumeric() || c == '_')
                                && !s.starts_with(|c: char| c.is_ascii_digit())))
                };
                if !ident_ok(&root) || root.chars().all(|c| c.is_ascii_digit()) || !path.iter().all(|p| ident_ok(p)) {
                    cx.error(
                        lit.span(),
                        format!("`{{{inner}}}` in `key` is not an argument path; write e.g. `{{id}}` or `{{user.id}}`"),
                    );
                    return None;
                }
                if !buf.is_empty() {
                    segments.push(Segment::Text(std::mem::take(&mut buf)));
                }
                segments.push(Segment::Arg { root, path });
            }
            '}' => {
                cx.error(
                    lit.span(),
                    "`key` has a `}` without its `{`; write `}}` for a literal brace",
                );
                return None;
            }
            c => buf.push(c),
        }
    }
    if !buf.is_empty() {
        segments.push(Segment::Text(buf));
    }
    Some(segments)
}
