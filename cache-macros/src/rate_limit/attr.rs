//! Parses the options of `#[rate_limit(...)]` into a typed model. Each option
//! keeps its span so errors point at the user's token. Parsing never generates.

use proc_macro2::{Span, TokenStream};
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::{Expr, ExprLit, Lit, LitInt, LitStr, MetaNameValue, Token};

pub(crate) const KEY: &str = "key";
pub(crate) const RATE: &str = "rate";
pub(crate) const BURST: &str = "burst";
pub(crate) const ALGORITHM: &str = "algorithm";
pub(crate) const STORE: &str = "store";
pub(crate) const CRATE: &str = "crate";
const OPTIONS: [&str; 6] = [KEY, RATE, BURST, ALGORITHM, STORE, CRATE];

/// The algorithms the runtime knows, as `algorithm = "..."` spells them.
pub(crate) const ALGORITHMS: [&str; 3] = ["gcra", "fixed_window", "sliding_window"];

/// The parsed options; `None` when absent (or invalid: the error is recorded).
pub(crate) struct Options {
    pub(crate) key: Option<LitStr>,
    pub(crate) rate: Option<LitStr>,
    pub(crate) burst: Option<(u32, Span)>,
    pub(crate) algorithm: Option<LitStr>,
    pub(crate) store: Option<LitStr>,
    pub(crate) krate: Option<syn::Path>,
    /// Span of the whole attribute, for "missing option" errors.
    pub(crate) span: Span,
}

pub(crate) fn parse(args: TokenStream, errors: &mut Vec<syn::Error>) -> Options {
    let mut options = Options {
        key: None,
        rate: None,
        burst: None,
        algorithm: None,
        store: None,
        krate: None,
        span: Span::call_site(),
    };
    let parsed = match Punctuated::<MetaNameValue, Token![,]>::parse_terminated.parse2(args) {
        Ok(parsed) => parsed,
        Err(err) => {
            errors.push(syn::Error::new(
                err.span(),
                format!("expected `name = value` options, e.g. #[rate_limit(key = \"{{user_id}}\", rate = \"100/m\")]: {err}"),
            ));
            return options;
        }
    };
    for option in parsed {
        let name = option.path.get_ident().map(|i| i.to_string()).unwrap_or_default();
        let value = &option.value;
        let duplicate = |errors: &mut Vec<syn::Error>| {
            errors.push(syn::Error::new_spanned(
                &option.path,
                format!("`{name}` is given twice"),
            ));
        };
        match name.as_str() {
            KEY | RATE | ALGORITHM | STORE | CRATE => {
                let Some(lit) = string(value, &name, errors) else {
                    continue;
                };
                let slot = match name.as_str() {
                    KEY => &mut options.key,
                    RATE => &mut options.rate,
                    ALGORITHM => &mut options.algorithm,
                    STORE => &mut options.store,
                    _ => {
                        match lit.parse::<syn::Path>() {
                            Ok(path) if options.krate.is_none() => options.krate = Some(path),
                            Ok(_) => duplicate(errors),
                            Err(_) => errors.push(syn::Error::new_spanned(
                                &lit,
                                "`crate` must be a path to the memorix crate, e.g. `crate = \"::my_reexport::memorix\"`",
                            )),
                        }
                        continue;
                    }
                };
                if slot.is_some() {
                    duplicate(errors);
                } else {
                    *slot = Some(lit);
                }
            }
            BURST => {
                let Some(int) = integer(value, errors) else { continue };
                match int.base10_parse::<u32>() {
                    Ok(burst) if burst >= 1 => {
                        if options.burst.is_some() {
                            duplicate(errors);
                        } else {
                            options.burst = Some((burst, int.span()));
                        }
                    }
                    _ => errors.push(syn::Error::new_spanned(
                        &int,
                        "`burst` must be a whole number from 1 to 4294967295",
                    )),
                }
            }
            _ => errors.push(syn::Error::new_spanned(
                &option.path,
                format!("unknown option `{name}`; expected one of: {}", OPTIONS.join(", ")),
            )),
        }
    }
    options
}

fn string(value: &Expr, name: &str, errors: &mut Vec<syn::Error>) -> Option<LitStr> {
    match value {
        Expr::Lit(ExprLit { lit: Lit::Str(lit), .. }) => Some(lit.clone()),
        _ => {
            errors.push(syn::Error::new_spanned(
                value,
                format!("`{name}` takes a string literal"),
            ));
            None
        }
    }
}

fn integer(value: &Expr, errors: &mut Vec<syn::Error>) -> Option<LitInt> {
    match value {
        Expr::Lit(ExprLit { lit: Lit::Int(lit), .. }) => Some(lit.clone()),
        _ => {
            errors.push(syn::Error::new_spanned(
                value,
                "`burst` takes an integer literal, e.g. `burst = 10`",
            ));
            None
        }
    }
}
