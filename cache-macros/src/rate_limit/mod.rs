//! `#[rate_limit(key = "...", rate = "100/m", burst = 10)]`: one pipeline,
//! one file per step: parse the options ([`attr`]), model the function and
//! check the rules ([`check`]), then generate ([`expand`]).

mod attr;
mod check;
mod expand;

use proc_macro2::TokenStream;
use quote::quote;

/// Entry point of `#[rate_limit]`. On error the original function is still
/// emitted next to the `compile_error!`s, so IDEs and callers keep working.
pub(crate) fn rate_limit(args: TokenStream, item: TokenStream) -> TokenStream {
    let function: syn::ItemFn = match syn::parse2(item.clone()) {
        Ok(function) => function,
        Err(_) => {
            let err = syn::Error::new_spanned(
                &item,
                "#[rate_limit] goes on an `async fn` returning `Result<T, E>` where `E: From<RateLimited>`",
            );
            let compile_error = err.to_compile_error();
            return quote! { #compile_error #item };
        }
    };
    let mut errors = Vec::new();
    let options = attr::parse(args, &mut errors);
    let checked = check::check(&options, &function, &mut errors);
    match (
        errors.into_iter().reduce(|mut all, e| {
            all.combine(e);
            all
        }),
        checked,
    ) {
        (None, Some(checked)) => expand::expand(&options, checked, function),
        (Some(err), _) => {
            let compile_error = err.to_compile_error();
            quote! { #compile_error #function }
        }
        (None, None) => quote! { #function },
    }
}
