//! Step 3: rules that span several options, or options and the function.

use crate::ast::{Func, Return};
use crate::attr::{Algorithm, CacheOpt, Codec, Kind, Options, Segment};
use crate::ctxt::Ctxt;
use syn::spanned::Spanned;
use syn::Type;

/// Reports every rule `opts` and `func` break together.
pub fn check(kind: Kind, opts: &Options, func: &Func, cx: &Ctxt) {
    check_key(kind, opts, func, cx);
    if kind == Kind::RateLimit {
        check_rate_limit(opts, func, cx);
        return;
    }
    if kind == Kind::Cached {
        check_mut_refs(func, cx);
    }
    check_codec(opts, cx);
    check_return_options(opts, func, cx);
    if let (Some(_), Some(cache)) = (opts.encrypt, &opts.cache) {
        cx.error(
            cache.span,
            "`encrypt` picks the registered encrypted cache; drop `cache`, or drop `encrypt` and pass an encrypted engine",
        );
    }
    if kind == Kind::CacheEvict {
        if let (Some(_), Some(key)) = (opts.all_entries, &opts.key) {
            cx.error(
                key.lit.span(),
                "`all_entries` clears the whole cache: drop `key`, or drop `all_entries`",
            );
        }
    }
}

fn check_key(kind: Kind, opts: &Options, func: &Func, cx: &Ctxt) {
    let names = || {
        let list: Vec<String> = func.args.iter().map(|a| format!("`{}`", a.ident)).collect();
        if list.is_empty() {
            "the function has no arguments".to_owned()
        } else {
            format!("arguments are: {}", list.join(", "))
        }
    };
    match &opts.key {
        Some(template) => {
            for segment in &template.segments {
                let Segment::Arg { root, .. } = segment else { continue };
                if root == "self" {
                    if !func.has_receiver() {
                        cx.error(
                            template.lit.span(),
                            "`key` names `self`, but the function has no `self` receiver",
                        );
                    }
                    continue;
                }
                if func.arg(root).is_none() {
                    cx.error(
                        template.lit.span(),
                        format!("`key` names `{root}`, which is not an argument; {}", names()),
                    );
                }
            }
        }
        None => {
            let needs_key = match kind {
                Kind::Cached => false,
                Kind::CachePut | Kind::RateLimit => true,
                Kind::CacheEvict => opts.all_entries.is_none(),
            };
            if needs_key {
                let what = match kind {
                    Kind::CacheEvict => "which entry to remove (or `all_entries`)",
                    Kind::RateLimit => "the subject being limited, e.g. `key = \"{user_id}\"`",
                    _ => "where to store the value",
                };
                cx.error(
                    func.item.sig.ident.span(),
                    format!("#[{}] needs `key = \"...\"` naming {what}; {}", kind.name(), names()),
                );
                return;
            }
            if let (Kind::Cached, Some(receiver)) = (kind, &func.receiver) {
                let example = func
                    .args
                    .iter()
                    .map(|a| format!(":{{{}}}", a.ident))
                    .collect::<String>();
                cx.error(
                    receiver.span,
                    format!(
                        "#[cached] on a method needs `key = \"...\"`: a key derived from the arguments ignores `self`, \
                         so every instance would share entries; name what identifies the instance, e.g. \
                         `key = \"{{self.id}}{example}\"`, or write a key without `self` if instances should share"
                    ),
                );
            }
            if kind == Kind::Cached {
                for arg in &func.args {
                    if let Some(span) = arg.impl_trait {
                        cx.error(
                            span,
                            format!(
                                "`{}` is an `impl Trait` argument and cannot be part of a derived key; \
                                 give `key = \"...\"` naming the arguments that identify the result",
                                arg.ident
                            ),
                        );
                    }
                }
            }
        }
    }
}

/// A cache hit skips the body, so changes it would make through `&mut` never happen.
fn check_mut_refs(func: &Func, cx: &Ctxt) {
    if let Some(receiver) = func.receiver.as_ref().filter(|r| r.is_mut_ref) {
        cx.error(
            receiver.span,
            "#[cached] cannot memoize a `&mut self` method: a cache hit skips the body, so its changes to \
             `self` would silently not happen; take `&self`, or drop #[cached]",
        );
    }
    for arg in &func.args {
        if let Some(span) = arg.mut_ref {
            cx.error(
                span,
                format!(
                    "#[cached] cannot take `{}` by `&mut`: a cache hit skips the body, so its changes to `{}` \
                     would silently not happen; take it by `&` or by value, or drop #[cached]",
                    arg.ident, arg.ident
                ),
            );
        }
    }
}

/// `#[rate_limit]`: a rate, a burst only for GCRA, an `async fn` returning `Result`.
fn check_rate_limit(opts: &Options, func: &Func, cx: &Ctxt) {
    if opts.rate.is_none() {
        cx.error(
            func.item.sig.ident.span(),
            "#[rate_limit] needs `rate`, e.g. `rate = \"100/m\"` (100 per minute)",
        );
    }
    if let (Some(burst), Some(algorithm)) = (&opts.burst, &opts.algorithm) {
        let name = match algorithm.value {
            Algorithm::Gcra => None,
            Algorithm::FixedWindow => Some("fixed_window"),
            Algorithm::SlidingWindow => Some("sliding_window"),
        };
        if let Some(name) = name {
            cx.error(
                burst.span,
                format!("`burst` applies only to `algorithm = \"gcra\"`; `{name}` allows `count` per window"),
            );
        }
    }
    if !func.is_async {
        cx.error(
            func.item.sig.fn_token.span,
            "#[rate_limit] needs an `async fn`: the limiter asks Redis before the body runs",
        );
    }
    let why = "#[rate_limit] returns `Err(RateLimited { retry_after, .. })` when the limit is reached, so the \
               function must return `Result<T, E>` with `E: From<memorix::ratelimit::RateLimited>`";
    match (&func.ret_kind, &func.item.sig.output) {
        (Return::Result { .. }, _) => {}
        (_, syn::ReturnType::Type(_, ty)) => cx.error(ty.span(), why),
        (_, syn::ReturnType::Default) => cx.error(func.item.sig.ident.span(), format!("{why}; it returns `()`")),
    }
}

fn check_codec(opts: &Options, cx: &Ctxt) {
    let Some(codec) = &opts.codec else { return };
    if codec.value != Codec::Raw {
        return;
    }
    if opts.encrypt.is_some() {
        cx.error(
            codec.span,
            "`encrypt` cannot be combined with `codec = \"raw\"`: the encrypted engine stores codec output; \
             use `codec = \"msgpack\"` (the default) or drop `encrypt`",
        );
    }
    for (flag, name) in [
        (opts.refresh_beta.as_ref().map(|s| s.span), "refresh_ahead"),
        (opts.stale_ms.as_ref().map(|s| s.span), "stale_if_error"),
    ] {
        if flag.is_some() {
            cx.error(
                codec.span,
                format!("`{name}` stores freshness metadata next to the value, which `codec = \"raw\"` cannot encode"),
            );
        }
    }
}

fn check_return_options(opts: &Options, func: &Func, cx: &Ctxt) {
    let is_result = matches!(func.ret_kind, Return::Result { .. });
    let is_option = matches!(func.ret_kind, Return::Option { .. });
    if let (Some(span), false) = (opts.cache_err, is_result) {
        cx.error(span, "`cache_err` needs a function returning `Result<T, E>`");
    }
    if let (Some(span), false) = (opts.cache_none, is_option) {
        cx.error(span, "`cache_none` needs a function returning `Option<T>`");
    }
    if let Some(stale) = &opts.stale_ms {
        if !is_result {
            cx.error(
                stale.span,
                "`stale_if_error` needs a function returning `Result<T, E>`: only an `Err` is a failure",
            );
        } else if opts.cache_err.is_some() {
            cx.error(
                stale.span,
                "`stale_if_error` and `cache_err` contradict each other: an `Err` is either cached or replaced",
            );
        }
    }
    let inner = match &func.ret_kind {
        Return::Result { ok } => Some(ok),
        Return::Option { inner } => Some(inner),
        Return::Plain => None,
    };
    if let Some(Type::Reference(r)) = inner {
        cx.error(
            r.span(),
            "a memoized function cannot return a reference: cached values are owned and outlive the call; \
             return an owned type (`String`, `Vec<T>`, `Arc<T>`)",
        );
    }
    if let Some(cache) = &opts.cache {
        if let CacheOpt::Named(name) = &cache.value {
            if name.is_empty() {
                cx.error(cache.span, "`cache` names a registered cache and cannot be empty");
            }
        }
    }
}
