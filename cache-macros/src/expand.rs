//! Step 4: code generation. Only called once parsing and checking found no
//! error. The generated code holds one `static` [`Memo`] per function and
//! calls into `__private` of the runtime; no cache logic is written out here.

use crate::ast::{Func, Return};
use crate::attr::{self, CacheOpt, Kind, Options, Segment};
use crate::check;
use crate::ctxt::Ctxt;
use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::{ItemFn, Type};

/// Runs the whole pipeline for one attribute.
pub fn run(kind: Kind, args: TokenStream, input: TokenStream) -> TokenStream {
    let item: ItemFn = match syn::parse2(input.clone()) {
        Ok(item) => item,
        Err(err) => {
            let err = syn::Error::new(
                err.span(),
                format!("#[{}] goes on a function with a body: {err}", kind.name()),
            )
            .to_compile_error();
            return quote!(#err #input);
        }
    };
    let cx = Ctxt::default();
    let opts = attr::parse(kind, args, &cx);
    let func = Func::from_item(item, &cx);
    check::check(kind, &opts, &func, &cx);
    if !cx.is_ok() {
        // Keep the function so callers and IDEs keep working.
        let errors = cx.into_compile_errors();
        let item = &func.item;
        return quote!(#errors #item);
    }
    let gen = Gen::new(&opts, &func);
    match kind {
        Kind::Cached => gen.cached(),
        Kind::CachePut => gen.put(),
        Kind::CacheEvict => gen.evict(),
    }
}

/// The expression of a template placeholder: `id`, `user.id`, `self.tenant`, `pair.0`.
fn placeholder(span: Span, root: &str, path: &[String]) -> TokenStream {
    let root = if root == "self" {
        quote_spanned!(span=> self)
    } else {
        let ident = syn::Ident::new(root, span);
        quote!(#ident)
    };
    let path = path.iter().map(|f| match f.parse::<u32>() {
        Ok(index) => {
            let index = syn::Index { index, span };
            quote!(.#index)
        }
        Err(_) => {
            let ident = syn::Ident::new(f, span);
            quote!(.#ident)
        }
    });
    quote!(#root #(#path)*)
}

struct Gen<'a> {
    opts: &'a Options,
    func: &'a Func,
    private: TokenStream,
    krate: TokenStream,
}

impl<'a> Gen<'a> {
    fn new(opts: &'a Options, func: &'a Func) -> Self {
        let krate = match &opts.krate {
            Some(path) => quote!(#path),
            None => quote!(::memorix),
        };
        Gen {
            opts,
            func,
            private: quote!(#krate::__private),
            krate,
        }
    }

    fn ms(&self, value: Option<u64>) -> TokenStream {
        match value {
            Some(ms) => quote!(::core::option::Option::Some(::core::time::Duration::from_millis(#ms))),
            None => quote!(::core::option::Option::None),
        }
    }

    /// `static __MEMORIX: Memo = Memo::new(MemoSpec { .. });`
    fn memo_static(&self) -> TokenStream {
        let p = &self.private;
        let o = self.opts;
        let fn_name = self.func.item.sig.ident.to_string();
        let name = match &o.name {
            Some(n) => {
                let n = &n.value;
                quote!(#n)
            }
            None => quote!(::core::concat!(::core::module_path!(), "::", #fn_name)),
        };
        let prefix = o.prefix.as_ref().map(|p| p.value.clone()).unwrap_or_default();
        let derived = o.key.is_none();
        let ttl = self.ms(o.ttl_ms.as_ref().map(|s| s.value));
        let jitter = self.ms(o.jitter_ms.as_ref().map(|s| s.value));
        let stale = self.ms(o.stale_ms.as_ref().map(|s| s.value));
        let beta = o.refresh_beta.as_ref().map_or(0.0, |s| s.value);
        let single_flight = o.lock.as_ref().is_none_or(|l| l.value != "none");
        let distributed = o.lock.as_ref().is_some_and(|l| l.value == "distributed");
        let cache = match (&o.cache, o.encrypt) {
            (_, Some(_)) => quote!(Encrypted),
            (None, None) => quote!(Default),
            (Some(c), None) => match &c.value {
                CacheOpt::Named(name) => quote!(Named(#name)),
                CacheOpt::Expr(_) => quote!(Expr),
            },
        };
        let codec = match o.codec.as_ref().map(|c| c.value.as_str()) {
            Some("msgpack") => quote!(MsgPack),
            Some("json") => quote!(Json),
            Some("pickle") => quote!(Pickle),
            Some("raw") => quote!(Raw),
            _ => quote!(Engine),
        };
        let compress = o.compress.is_some();
        quote! {
            static __MEMORIX: #p::Memo = #p::Memo::new(#p::MemoSpec {
                name: #name,
                prefix: #prefix,
                derived_key: #derived,
                ttl: #ttl,
                jitter: #jitter,
                refresh_beta: #beta,
                stale_if_error: #stale,
                single_flight: #single_flight,
                distributed: #distributed,
                cache: #p::CacheChoice::#cache,
                codec: #p::CodecChoice::#codec,
                compress: #compress,
            });
        }
    }

    /// `|__k| { __k.arg(&id); ... }` or the template's pieces.
    fn key_closure(&self) -> TokenStream {
        let p = &self.private;
        let pushes: Vec<TokenStream> = match &self.opts.key {
            None => self.key_values().iter().map(|v| quote!(__k.arg(&#v);)).collect(),
            Some(template) => template
                .segments
                .iter()
                .map(|s| match s {
                    Segment::Text(text) => quote!(__k.lit(#text);),
                    Segment::Arg { root, path } => {
                        let value = placeholder(template.lit.span(), root, path);
                        quote!(__k.part(&(#value));)
                    }
                })
                .collect(),
        };
        quote!(|__k: &mut #p::KeyBuf| { #(#pushes)* })
    }

    /// The key's arguments as a tuple of references (`(&id, &lang)`, or the
    /// template's placeholders), when the argument-keyed front may serve the
    /// call: not for `cache = EXPR` (no in-process tier) nor for options that
    /// read freshness metadata on every hit (`refresh_ahead`, `stale_if_error`).
    fn key_args(&self) -> Option<TokenStream> {
        let o = self.opts;
        if matches!(o.cache.as_ref().map(|c| &c.value), Some(CacheOpt::Expr(_)))
            || o.refresh_beta.is_some()
            || o.stale_ms.is_some()
        {
            return None;
        }
        let parts = self.key_values();
        Some(quote!((#(&(#parts),)*)))
    }

    /// The expressions the key is made of, in order: every argument for a
    /// derived key, else the template's placeholders.
    fn key_values(&self) -> Vec<TokenStream> {
        match &self.opts.key {
            None => self
                .func
                .args
                .iter()
                .map(|a| {
                    let ident = &a.ident;
                    quote!(#ident)
                })
                .collect(),
            Some(template) => template
                .segments
                .iter()
                .filter_map(|s| match s {
                    Segment::Text(_) => None,
                    Segment::Arg { root, path } => Some(placeholder(template.lit.span(), root, path)),
                })
                .collect(),
        }
    }

    fn cache_expr(&self) -> TokenStream {
        let p = &self.private;
        match self.opts.cache.as_ref().map(|c| &c.value) {
            Some(CacheOpt::Expr(expr)) => quote! {{
                use #p::CacheHandle as _;
                ::core::option::Option::Some((#expr).memorix_cache_handle())
            }},
            _ => quote!(::core::option::Option::None),
        }
    }

    /// The cached type and the adapter between it and the return type.
    fn adapter(&self, with_options: bool) -> (TokenStream, TokenStream) {
        let p = &self.private;
        let ret = &self.func.ret;
        let cache_err = with_options && self.opts.cache_err.is_some();
        let cache_none = with_options && self.opts.cache_none.is_some();
        let (stored, to, from, is_error): (Type, TokenStream, TokenStream, TokenStream) = match &self.func.ret_kind {
            Return::Result { ok } if !cache_err => (
                ok.clone(),
                quote!(match __r {
                    ::core::result::Result::Ok(__v) => ::core::option::Option::Some(::core::clone::Clone::clone(__v)),
                    ::core::result::Result::Err(_) => ::core::option::Option::None,
                }),
                quote!(::core::result::Result::Ok(__s)),
                quote!(__r.is_err()),
            ),
            Return::Option { inner } if !cache_none => (
                inner.clone(),
                quote!(::core::clone::Clone::clone(__r)),
                quote!(::core::option::Option::Some(__s)),
                quote!(false),
            ),
            _ => (
                ret.clone(),
                quote!(::core::option::Option::Some(::core::clone::Clone::clone(__r))),
                quote!(__s),
                quote!(false),
            ),
        };
        let to = match (&self.opts.unless, with_options) {
            (Some(unless), true) => {
                let unless = &unless.value;
                quote!(if (#unless)(__r) { ::core::option::Option::None } else { #to })
            }
            _ => to,
        };
        let adapter = quote! {
            #p::Adapter::<#ret, #stored> {
                to_stored: |__r: &#ret| -> ::core::option::Option<#stored> { #to },
                from_stored: |__s: #stored| -> #ret { #from },
                is_error: |__r: &#ret| -> bool { let _ = __r; #is_error },
                share: { #[allow(unused_imports)] use #p::{ShareByClone as _, ShareNone as _}; (&#p::ShareProbe::<#ret>::new()).memorix_share() },
            }
        };
        (quote!(#stored), adapter)
    }

    /// The original body, as a future (`async fn`) or a closure (`fn`).
    fn body(&self) -> TokenStream {
        let block = &self.func.item.block;
        let ret = &self.func.ret;
        if self.func.is_async {
            quote! {
                async move {
                    #[allow(unreachable_code, clippy::diverging_sub_expression)]
                    if false {
                        let __memorix_hint: #ret = loop {};
                        return __memorix_hint;
                    }
                    #block
                }
            }
        } else {
            quote!(move || -> #ret #block)
        }
    }

    /// The function's signature with a new name, return type and extra arguments.
    fn companion(
        &self,
        suffix: &str,
        doc: &str,
        is_async: bool,
        ret: TokenStream,
        extra: TokenStream,
        body: TokenStream,
    ) -> TokenStream {
        let item = &self.func.item;
        let vis = &item.vis;
        let mut sig = item.sig.clone();
        sig.ident = format_ident!("{}_{}", sig.ident, suffix, span = sig.ident.span());
        sig.asyncness = if is_async { Some(Default::default()) } else { None };
        sig.output = syn::parse_quote!(-> #ret);
        if !extra.is_empty() {
            sig.inputs.push(syn::parse_quote!(#extra));
        }
        let fn_name = &item.sig.ident;
        let doc = format!("{doc} of [`{fn_name}`](Self::{fn_name}) (generated by `#[cached]`).");
        let doc = if self.func.has_receiver {
            doc
        } else {
            doc.replace("(Self::", "(")
                .replace(&format!("({fn_name})"), &format!("({fn_name}())"))
        };
        quote! {
            #[doc = #doc]
            #[allow(unused_variables, clippy::too_many_arguments)]
            #vis #sig {
                #body
            }
        }
    }

    fn cached(&self) -> TokenStream {
        let p = &self.private;
        let krate = &self.krate;
        let memo = self.memo_static();
        let key = self.key_closure();
        let cache = self.cache_expr();
        let (stored, adapter) = self.adapter(true);
        let body = self.body();
        let item = &self.func.item;
        let (attrs, vis, sig) = (&item.attrs, &item.vis, &item.sig);
        let is_async = self.func.is_async;
        let (fill, dot_await) = if is_async {
            (quote!(fill), quote!(.await))
        } else {
            (quote!(fill_blocking), quote!())
        };
        // Plain arguments pick the argument-keyed front at compile time
        // (autoref specialization: `ViaArgs` when they are a `KeyPart`,
        // `ViaKeyText` otherwise); the borrow ends before the body moves them.
        let lookup = match self.key_args() {
            Some(args) => quote! {{
                #[allow(unused_imports)]
                use #p::{ViaArgs as _, ViaKeyText as _};
                ::std::thread_local! {
                    static __MEMORIX_PIN: #p::ThreadPin = const { #p::ThreadPin::new() };
                }
                (&#p::Args(&#args)).memorix_lookup(&__MEMORIX, &__MEMORIX_PIN, #cache, #key)
            }},
            None => quote!(__MEMORIX.lookup::<#stored>(#cache, #key)),
        };
        let main = quote! {
            #(#attrs)*
            #vis #sig {
                #memo
                let __adapter = #adapter;
                let __lookup: #p::Lookup<#stored> = #lookup;
                match __lookup {
                    #p::Lookup::Hit(__v) => (__adapter.from_stored)(__v),
                    #p::Lookup::Miss(__miss) => __MEMORIX.#fill(__miss, __adapter, #body)#dot_await,
                }
            }
        };
        let (invalidate, prime) = if is_async {
            (quote!(invalidate), quote!(prime))
        } else {
            (quote!(invalidate_blocking), quote!(prime_blocking))
        };
        let invalidate = self.companion(
            "invalidate",
            "Removes the cached result for these arguments; true if there was one. The",
            is_async,
            quote!(#krate::Result<bool>),
            quote!(),
            quote! {
                #memo
                __MEMORIX.#invalidate(#cache, __MEMORIX.key(#key))#dot_await
            },
        );
        let prime = self.companion(
            "prime",
            "Stores `memorix_value` as the cached result for these arguments. The",
            is_async,
            quote!(#krate::Result<()>),
            quote!(memorix_value: #stored),
            quote! {
                #memo
                __MEMORIX.#prime(#cache, __MEMORIX.key(#key), memorix_value)#dot_await
            },
        );
        let block = &item.block;
        let no_cache = self.companion(
            "no_cache",
            "Runs the body without reading or writing the cache. The uncached twin",
            is_async,
            {
                let ret = &self.func.ret;
                quote!(#ret)
            },
            quote!(),
            quote!(#block),
        );
        let cache_key = self.companion(
            "cache_key",
            "The cache key for these arguments. The key",
            false,
            quote!(::std::string::String),
            quote!(),
            quote! {
                #memo
                __MEMORIX.key(#key)
            },
        );
        quote!(#main #invalidate #prime #no_cache #cache_key)
    }

    fn put(&self) -> TokenStream {
        let memo = self.memo_static();
        let key = self.key_closure();
        let cache = self.cache_expr();
        let (stored, adapter) = self.adapter(false);
        let body = self.body();
        let item = &self.func.item;
        let (attrs, vis, sig) = (&item.attrs, &item.vis, &item.sig);
        let ret = &self.func.ret;
        let (value, to_stored) = match &self.opts.value {
            Some(v) => {
                let v = &v.value;
                (
                    quote!(::core::option::Option::Some(#v)),
                    quote!(|_: &#ret| ::core::option::Option::None),
                )
            }
            None => (
                quote!(::core::option::Option::<#stored>::None),
                quote!(__adapter.to_stored),
            ),
        };
        let (put, dot_await) = if self.func.is_async {
            (quote!(put), quote!(.await))
        } else {
            (quote!(put_blocking), quote!())
        };
        quote! {
            #(#attrs)*
            #vis #sig {
                #memo
                let __adapter = #adapter;
                let __cache = #cache;
                let __key = __MEMORIX.key(#key);
                let __value = #value;
                __MEMORIX.#put(__cache, __key, __value, #to_stored, __adapter.is_error, #body)#dot_await
            }
        }
    }

    fn evict(&self) -> TokenStream {
        let memo = self.memo_static();
        let cache = self.cache_expr();
        let body = self.body();
        let item = &self.func.item;
        let (attrs, vis, sig) = (&item.attrs, &item.vis, &item.sig);
        let ret = &self.func.ret;
        let key = match self.opts.all_entries {
            Some(_) => quote!(::core::option::Option::None),
            None => {
                let key = self.key_closure();
                quote!(::core::option::Option::Some(__MEMORIX.key(#key)))
            }
        };
        let is_error = match self.func.ret_kind {
            Return::Result { .. } => quote!(__r.is_err()),
            _ => quote!(false),
        };
        let before = self.opts.before_invocation.is_some();
        let (evict, dot_await) = if self.func.is_async {
            (quote!(evict), quote!(.await))
        } else {
            (quote!(evict_blocking), quote!())
        };
        let span = Span::call_site();
        quote_spanned! {span=>
            #(#attrs)*
            #vis #sig {
                #memo
                let __cache = #cache;
                let __key = #key;
                __MEMORIX.#evict(__cache, __key, #before, |__r: &#ret| -> bool { let _ = __r; #is_error }, #body)#dot_await
            }
        }
    }
}
