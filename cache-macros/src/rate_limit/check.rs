//! Rules that span several options or the annotated function. Every problem
//! is recorded (not just the first), each pointing at the user's token.

use super::attr::{Options, ALGORITHMS};
use proc_macro2::Span;
use syn::spanned::Spanned;
use syn::{FnArg, ItemFn, Pat, ReturnType, Type};

/// What generation needs once the checks pass.
pub(crate) struct Checked {
    /// Span of the declared return type, so a missing `From<RateLimited>` is
    /// reported there.
    pub(crate) return_span: Span,
}

pub(crate) fn check(options: &Options, function: &ItemFn, errors: &mut Vec<syn::Error>) -> Option<Checked> {
    let before = errors.len();
    let args = argument_names(function);

    match &options.key {
        None => errors.push(syn::Error::new(
            options.span,
            "#[rate_limit] needs `key`, the subject being limited, e.g. `key = \"{user_id}\"`",
        )),
        Some(key) => check_key(key, &args, errors),
    }
    match &options.rate {
        None => errors.push(syn::Error::new(
            options.span,
            "#[rate_limit] needs `rate`, e.g. `rate = \"100/m\"` (100 per minute)",
        )),
        Some(rate) => {
            if let Err(why) = parse_rate(&rate.value()) {
                errors.push(syn::Error::new_spanned(
                    rate,
                    format!(
                        "`rate = \"{}\"` {why}; write `<count>/<period>`, e.g. `100/m`, `10/s`, `5/30s`",
                        rate.value()
                    ),
                ));
            }
        }
    }
    let algorithm = options.algorithm.as_ref().map(|a| a.value().replace('-', "_"));
    if let (Some(lit), Some(name)) = (&options.algorithm, &algorithm) {
        if !ALGORITHMS.contains(&name.as_str()) {
            errors.push(syn::Error::new_spanned(
                lit,
                format!(
                    "unknown algorithm `{}`; expected one of: {}",
                    lit.value(),
                    ALGORITHMS.join(", ")
                ),
            ));
        }
    }
    if let (Some((_, span)), Some(name)) = (&options.burst, &algorithm) {
        if name != "gcra" && ALGORITHMS.contains(&name.as_str()) {
            errors.push(syn::Error::new(
                *span,
                format!("`burst` applies only to `algorithm = \"gcra\"`; `{name}` allows `count` per window"),
            ));
        }
    }

    if function.sig.asyncness.is_none() {
        errors.push(syn::Error::new(
            function.sig.fn_token.span,
            "#[rate_limit] needs an `async fn`: the limiter asks Redis before the body runs",
        ));
    }
    let return_span = match &function.sig.output {
        ReturnType::Type(_, ty) if is_result(ty) => ty.span(),
        ReturnType::Type(_, ty) => {
            errors.push(syn::Error::new_spanned(
                ty,
                "#[rate_limit] returns `Err(RateLimited { retry_after, .. })` when the limit is reached, so the \
                 function must return `Result<T, E>` with `E: From<memorix::ratelimit::RateLimited>`",
            ));
            ty.span()
        }
        ReturnType::Default => {
            errors.push(syn::Error::new(
                function.sig.ident.span(),
                "#[rate_limit] returns `Err(RateLimited { retry_after, .. })` when the limit is reached, so the \
                 function must return `Result<T, E>` with `E: From<memorix::ratelimit::RateLimited>`; it returns `()`",
            ));
            function.sig.ident.span()
        }
    };
    (errors.len() == before).then_some(Checked { return_span })
}

/// Names of the arguments bound to a plain identifier.
fn argument_names(function: &ItemFn) -> Vec<String> {
    function
        .sig
        .inputs
        .iter()
        .filter_map(|arg| match arg {
            FnArg::Typed(typed) => match &*typed.pat {
                Pat::Ident(ident) => Some(ident.ident.to_string()),
                _ => None,
            },
            FnArg::Receiver(_) => None,
        })
        .collect()
}

/// Every `{name}` (or `{name:spec}`) in the key must name an argument.
fn check_key(key: &syn::LitStr, args: &[String], errors: &mut Vec<syn::Error>) {
    let text = key.value();
    let mut rest = text.as_str();
    while let Some(open) = rest.find(['{', '}']) {
        let brace = rest.as_bytes()[open];
        rest = &rest[open + 1..];
        if rest.starts_with(brace as char) {
            rest = &rest[1..]; // `{{` or `}}`
            continue;
        }
        if brace == b'}' {
            errors.push(syn::Error::new_spanned(
                key,
                "`key` has an unmatched `}`; write `}}` for a literal brace",
            ));
            return;
        }
        let Some(close) = rest.find('}') else {
            errors.push(syn::Error::new_spanned(
                key,
                "`key` has an unclosed `{`; write `{{` for a literal brace",
            ));
            return;
        };
        let name = rest[..close].split(':').next().unwrap_or_default().trim();
        if !args.iter().any(|a| a == name) {
            let listed = if args.is_empty() {
                "the function has no named arguments".to_owned()
            } else {
                format!(
                    "arguments are: {}",
                    args.iter().map(|a| format!("`{a}`")).collect::<Vec<_>>().join(", ")
                )
            };
            errors.push(syn::Error::new_spanned(
                key,
                format!("`key` names `{name}`, which is not an argument; {listed}"),
            ));
        }
        rest = &rest[close + 1..];
    }
}

/// The same grammar as `memorix::ratelimit::Rate::parse`, read at compile
/// time: `<count>/<period>`, the period a unit (`s`, `m`, ...) or a duration.
/// Returns the count and the period in milliseconds.
pub(crate) fn parse_rate(text: &str) -> Result<(u32, u64), &'static str> {
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
    match crate::attr::parse_duration(&period) {
        Some(0) => Err("has a zero period"),
        Some(ms) => Ok((count, ms)),
        None => Err("has an unknown period"),
    }
}

fn is_result(ty: &Type) -> bool {
    match ty {
        Type::Path(path) => path.path.segments.last().is_some_and(|s| s.ident == "Result"),
        Type::Group(group) => is_result(&group.elem),
        Type::Paren(paren) => is_result(&paren.elem),
        _ => false,
    }
}
