//! Generates the limited function. Generating never validates: the checks
//! already passed. The code calls only `<crate>::__private`.

use super::attr::Options;
use super::check::Checked;
use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::ItemFn;

pub(crate) fn expand(options: &Options, checked: Checked, function: ItemFn) -> TokenStream {
    let krate = options
        .krate
        .as_ref()
        .map(|path| quote!(#path))
        .unwrap_or_else(|| quote!(::memorix));
    let private = quote!(#krate::__private);
    let ItemFn { attrs, vis, sig, block } = function;
    // Spliced, not nested: a block inside a block trips `unused_braces`.
    let stmts = &block.stmts;
    let name = sig.ident.to_string();
    let key = options.key.as_ref().map(|k| quote!(#k)).unwrap_or_default();
    let (count, period_ms) = options
        .rate
        .as_ref()
        .and_then(|r| super::check::parse_rate(&r.value()).ok())
        .unwrap_or((1, 1_000));
    let rate = quote!(#krate::ratelimit::Rate::new(#count, ::core::time::Duration::from_millis(#period_ms)));
    let burst = match options.burst {
        Some((burst, _)) => quote!(::std::option::Option::Some(#burst)),
        None => quote!(::std::option::Option::None),
    };
    let algorithm = match options
        .algorithm
        .as_ref()
        .map(|a| a.value().replace('-', "_"))
        .as_deref()
    {
        Some("fixed_window") => quote!(FixedWindow),
        Some("sliding_window") => quote!(SlidingWindow),
        _ => quote!(Gcra),
    };
    let algorithm = quote!(#krate::ratelimit::Algorithm::#algorithm);
    let store = match &options.store {
        Some(store) => quote!(::std::option::Option::Some(#store)),
        None => quote!(::std::option::Option::None),
    };
    // Spanned at the return type: a missing `From<RateLimited>` is reported there.
    let convert = quote_spanned! {checked.return_span=>
        ::std::convert::From::from(__memorix_limited)
    };
    quote! {
        #(#attrs)*
        #vis #sig {
            {
                static __MEMORIX_RATE_LIMITER: #private::RateLimitMacroLimiter = #private::RateLimitMacroLimiter::new(
                    ::std::concat!(::std::module_path!(), "::", #name),
                    #rate,
                    #burst,
                    #algorithm,
                    #store,
                );
                let __memorix_subject = ::std::format!(#key);
                if let ::std::result::Result::Err(__memorix_limited) =
                    __MEMORIX_RATE_LIMITER.check(&__memorix_subject).await
                {
                    return ::std::result::Result::Err(#convert);
                }
            }
            #(#stmts)*
        }
    }
}
