//! Step 4: code generation. Only called once parsing and checking found no
//! error. The generated code holds one `static` [`Memo`] per function and
//! calls into `__private` of the runtime; no cache logic is written out here.

use crate::ast::{Func, Return};
use crate::attr::{self, Algorithm, CacheOpt, Codec, Kind, Lock, Options, Segment};
use crate::check;
use crate::ctxt::Ctxt;
use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned as _;
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
    let func = Func::from_item(item, kind != Kind::RateLimit, &cx);
    check::check(kind, &opts, &func, &cx);
    let gen = Gen::new(&opts, &func);
    if !cx.is_ok() {
        // Keep the function, and stubs of its companions, so callers and IDEs
        // see only the errors above, not a cascade of missing names.
        let errors = cx.into_compile_errors();
        let item = &func.item;
        let stubs = if kind == Kind::Cached { gen.stubs() } else { quote!() };
        return quote!(#errors #item #stubs);
    }
    match kind {
        Kind::Cached => gen.cached(),
        Kind::CachePut => gen.put(),
        Kind::CacheEvict => gen.evict(),
        Kind::RateLimit => gen.rate_limited(),
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
        let prefix = match &o.prefix {
            Some(p) => {
                let p = &p.value;
                quote!(::core::option::Option::Some(#p))
            }
            None => quote!(::core::option::Option::None),
        };
        let derived = o.key.is_none();
        let ttl = self.ms(o.ttl_ms.as_ref().map(|s| s.value));
        let jitter = self.ms(o.jitter_ms.as_ref().map(|s| s.value));
        let stale = self.ms(o.stale_ms.as_ref().map(|s| s.value));
        let beta = o.refresh_beta.as_ref().map_or(0.0, |s| s.value);
        let lock = o.lock.as_ref().map_or(Lock::Local, |l| l.value);
        let single_flight = lock != Lock::None;
        let distributed = lock == Lock::Distributed;
        let cache = match (&o.cache, o.encrypt) {
            (_, Some(_)) => quote!(Encrypted),
            (None, None) => quote!(Default),
            (Some(c), None) => match &c.value {
                CacheOpt::Named(name) => quote!(Named(#name)),
                CacheOpt::Expr(_) => quote!(Expr),
            },
        };
        let codec = match o.codec.as_ref().map(|c| c.value) {
            Some(Codec::MsgPack) => quote!(MsgPack),
            Some(Codec::Json) => quote!(Json),
            Some(Codec::Pickle) => quote!(Pickle),
            Some(Codec::Raw) => quote!(Raw),
            None => quote!(Engine),
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

    /// `|__k| { __k.arg(&id); ... }` or the template's pieces, after the
    /// instantiated type and const parameters of a generic function.
    fn key_closure(&self) -> TokenStream {
        let p = &self.private;
        let mut pushes = self.generic_key_parts();
        pushes.extend(match &self.opts.key {
            // Spanned at each argument's type: one that cannot be written
            // into a key is reported there.
            None => self
                .func
                .args
                .iter()
                .map(|a| {
                    let (ident, ty) = (&a.ident, &a.ty);
                    quote_spanned!(ty.span()=> __k.arg::<#ty>(&#ident);)
                })
                .collect(),
            Some(_) => self.template_pushes(),
        });
        quote!(|__k: &mut #p::KeyBuf| { #(#pushes)* })
    }

    /// `__k.lit("user:"); __k.part(&(user.id));`: the `key` template's pieces.
    fn template_pushes(&self) -> Vec<TokenStream> {
        let Some(template) = &self.opts.key else {
            return Vec::new();
        };
        template
            .segments
            .iter()
            .map(|s| match s {
                Segment::Text(text) => quote!(__k.lit(#text);),
                Segment::Arg { root, path } => {
                    let value = placeholder(template.lit.span(), root, path);
                    quote!(__k.part(&(#value));)
                }
            })
            .collect()
    }

    /// `__k.types(&[type_name::<T>()]); __k.arg(&N);` for a generic function.
    fn generic_key_parts(&self) -> Vec<TokenStream> {
        let func = self.func;
        let mut parts = Vec::new();
        if !func.type_params.is_empty() {
            let types = &func.type_params;
            parts.push(quote!(__k.types(&[#(::core::any::type_name::<#types>()),*]);));
        }
        parts.extend(func.const_params.iter().map(|c| quote!(__k.arg(&#c);)));
        if !parts.is_empty() && self.opts.key.is_some() {
            parts.push(quote!(__k.lit(":");));
        }
        parts
    }

    /// The key's arguments as a tuple of references (`(&id, &lang)`, or the
    /// template's placeholders), when the argument-keyed front may serve the
    /// call: not for `cache = EXPR` (no in-process tier) nor for options that
    /// read freshness metadata on every hit (`refresh_ahead`, `stale_if_error`).
    fn key_args(&self) -> Option<TokenStream> {
        let o = self.opts;
        // A generic function's arguments need not name its type parameters
        // (`fn f<T>(id: u64)`): only the key text tells instantiations apart.
        if matches!(o.cache.as_ref().map(|c| &c.value), Some(CacheOpt::Expr(_)))
            || self.func.is_generic()
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
                    ::core::result::Result::Ok(__v) => ::core::option::Option::Some(#p::stored_clone::<#ok>(__v)),
                    ::core::result::Result::Err(_) => ::core::option::Option::None,
                }),
                quote!(::core::result::Result::Ok(__s)),
                quote!(__r.is_err()),
            ),
            Return::Option { inner } if !cache_none => (
                inner.clone(),
                quote!(match __r {
                    ::core::option::Option::Some(__v) => ::core::option::Option::Some(#p::stored_clone::<#inner>(__v)),
                    ::core::option::Option::None => ::core::option::Option::None,
                }),
                quote!(::core::option::Option::Some(__s)),
                quote!(false),
            ),
            _ => (
                ret.clone(),
                quote!(::core::option::Option::Some(#p::stored_clone::<#ret>(__r))),
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

    /// Where a cached type that is not storable is reported: the type itself.
    /// Every call that needs `S: Storable` is spanned here, so the compiler
    /// reports the missing bound once, at the user's type.
    fn stored_span(&self, with_options: bool) -> Span {
        let cache_err = with_options && self.opts.cache_err.is_some();
        let cache_none = with_options && self.opts.cache_none.is_some();
        match &self.func.ret_kind {
            Return::Result { ok } if !cache_err => ok.span(),
            Return::Option { inner } if !cache_none => inner.span(),
            _ => self.func.ret.span(),
        }
    }

    /// The original body, as a future (`async fn`) or a closure (`fn`).
    fn body(&self) -> TokenStream {
        let stmts = &self.func.item.block.stmts;
        let ret = &self.func.ret;
        if self.func.is_async {
            quote! {
                async move {
                    #[allow(unreachable_code, clippy::diverging_sub_expression)]
                    if false {
                        let __memorix_hint: #ret = loop {};
                        return __memorix_hint;
                    }
                    #(#stmts)*
                }
            }
        } else {
            quote!(move || -> #ret { #(#stmts)* })
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
        let doc = if self.func.has_receiver() {
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

    /// The companions' signatures with bodies that never run: emitted next to
    /// compile errors only.
    fn stubs(&self) -> TokenStream {
        let krate = &self.krate;
        let (stored, _) = self.adapter(true);
        let ret = &self.func.ret;
        let is_async = self.func.is_async;
        let body = quote!(::core::unimplemented!("#[cached] reported a compile error"));
        let stub = |suffix: &str, is_async: bool, ret: TokenStream, extra: TokenStream| {
            self.companion(suffix, "A stub", is_async, ret, extra, body.clone())
        };
        let stubs = [
            stub("invalidate", is_async, quote!(#krate::Result<bool>), quote!()),
            stub(
                "prime",
                is_async,
                quote!(#krate::Result<()>),
                quote!(memorix_value: #stored),
            ),
            stub("no_cache", is_async, quote!(#ret), quote!()),
            stub("cache_key", false, quote!(::std::string::String), quote!()),
        ];
        quote!(#(#stubs)*)
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
        let sspan = self.stored_span(true);
        // `.await` of a call generic over the cached type, spanned at that type.
        let dot_await = if is_async {
            quote_spanned!(sspan=> .await)
        } else {
            quote!()
        };
        let check = quote_spanned!(sspan=> #p::check_storable::<#stored>(););
        // Plain arguments pick the argument-keyed front at compile time
        // (autoref specialization: `ViaArgs` when they are a `KeyPart`,
        // `ViaKeyText` otherwise); the borrow ends before the body moves them.
        let lookup_call = quote_spanned! {sspan=>
            (&__memorix_args).memorix_lookup::<#stored, _>(&__MEMORIX, &__MEMORIX_PIN, __memorix_cache, __memorix_key)
        };
        let lookup_text = quote_spanned! {sspan=>
            __MEMORIX.lookup::<#stored>(__memorix_cache, __memorix_key)
        };
        let lookup = match self.key_args() {
            Some(args) => quote! {{
                #[allow(unused_imports)]
                use #p::{ViaArgs as _, ViaKeyText as _};
                ::std::thread_local! {
                    static __MEMORIX_PIN: #p::ThreadPin = const { #p::ThreadPin::new() };
                }
                let __memorix_args = #p::Args(&#args);
                let __memorix_cache = #cache;
                let __memorix_key = #key;
                #lookup_call
            }},
            None => quote! {{
                let __memorix_cache = #cache;
                let __memorix_key = #key;
                #lookup_text
            }},
        };
        let fill_call = if is_async {
            quote_spanned!(sspan=> __MEMORIX.fill::<_, #stored, _>(__miss, __adapter, __memorix_body).await)
        } else {
            quote_spanned!(sspan=> __MEMORIX.fill_blocking::<_, #stored>(__miss, __adapter, __memorix_body))
        };
        let main = quote! {
            #(#attrs)*
            #vis #sig {
                #check
                #memo
                let __adapter = #adapter;
                let __lookup: #p::Lookup<#stored> = #lookup;
                match __lookup {
                    #p::Lookup::Hit(__v) => (__adapter.from_stored)(__v),
                    #p::Lookup::Miss(__miss) => {
                        let __memorix_body = #body;
                        #fill_call
                    }
                }
            }
        };
        let (invalidate, prime_call) = if is_async {
            (
                quote!(invalidate),
                quote_spanned!(sspan=> __MEMORIX.prime::<#stored>(__memorix_cache, __memorix_key, memorix_value).await),
            )
        } else {
            (
                quote!(invalidate_blocking),
                quote_spanned!(sspan=> __MEMORIX.prime_blocking::<#stored>(__memorix_cache, __memorix_key, memorix_value)),
            )
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
                #check
                #memo
                let __memorix_cache = #cache;
                let __memorix_key = __MEMORIX.key(#key);
                #prime_call
            },
        );
        let stmts = &item.block.stmts;
        let no_cache = self.companion(
            "no_cache",
            "Runs the body without reading or writing the cache. The uncached twin",
            is_async,
            {
                let ret = &self.func.ret;
                quote!(#ret)
            },
            quote!(),
            quote!(#(#stmts)*),
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
        let p = &self.private;
        let memo = self.memo_static();
        let key = self.key_closure();
        let cache = self.cache_expr();
        let body = self.body();
        let item = &self.func.item;
        let (attrs, vis, sig) = (&item.attrs, &item.vis, &item.sig);
        let ret = &self.func.ret;
        let sspan = self.stored_span(false);
        // With `value = EXPR` the stored type is the expression's, inferred;
        // otherwise the result's cacheable part, checked at its type.
        let (stored, check, value, to_stored) = match &self.opts.value {
            Some(v) => {
                let v = &v.value;
                (
                    quote!(_),
                    quote!(),
                    quote!(::core::option::Option::Some(#v)),
                    quote!(|_: &#ret| ::core::option::Option::None),
                )
            }
            None => {
                let (stored, adapter) = self.adapter(false);
                (
                    stored.clone(),
                    quote_spanned!(sspan=> #p::check_storable::<#stored>();),
                    quote!(::core::option::Option::<#stored>::None),
                    quote!((#adapter).to_stored),
                )
            }
        };
        let is_error = match self.func.ret_kind {
            Return::Result { .. } => quote!(__r.is_err()),
            _ => quote!(false),
        };
        let put_call = if self.func.is_async {
            quote_spanned!(sspan=> __MEMORIX.put::<_, #stored, _>(__cache, __key, __value, __memorix_to_stored, __memorix_is_error, __memorix_body).await)
        } else {
            quote_spanned!(sspan=> __MEMORIX.put_blocking::<_, #stored>(__cache, __key, __value, __memorix_to_stored, __memorix_is_error, __memorix_body))
        };
        quote! {
            #(#attrs)*
            #vis #sig {
                #check
                #memo
                let __cache = #cache;
                let __key = __MEMORIX.key(#key);
                let __value = #value;
                let __memorix_to_stored = #to_stored;
                let __memorix_is_error = |__r: &#ret| -> bool { let _ = __r; #is_error };
                let __memorix_body = #body;
                #put_call
            }
        }
    }

    /// `#[rate_limit]`: check the subject, then run the body.
    fn rate_limited(&self) -> TokenStream {
        let p = &self.private;
        let krate = &self.krate;
        let o = self.opts;
        let item = &self.func.item;
        let (attrs, vis, sig) = (&item.attrs, &item.vis, &item.sig);
        let stmts = &item.block.stmts;
        let name = sig.ident.to_string();
        let attr::Rate { count, period_ms } = o.rate.as_ref().map_or(
            attr::Rate {
                count: 1,
                period_ms: 1_000,
            },
            |r| r.value,
        );
        let rate = quote!(#krate::ratelimit::Rate::new(#count, ::core::time::Duration::from_millis(#period_ms)));
        let algorithm = match o.algorithm.as_ref().map(|a| a.value) {
            Some(Algorithm::FixedWindow) => quote!(FixedWindow),
            Some(Algorithm::SlidingWindow) => quote!(SlidingWindow),
            Some(Algorithm::Gcra) | None => quote!(Gcra),
        };
        let burst = match &o.burst {
            Some(b) => {
                let b = b.value;
                quote!(::core::option::Option::Some(#b))
            }
            None => quote!(::core::option::Option::None),
        };
        let store = match &o.store {
            Some(s) => {
                let s = &s.value;
                quote!(::core::option::Option::Some(#s))
            }
            None => quote!(::core::option::Option::None),
        };
        let subject = self.template_pushes();
        // Spanned at the return type: a missing `From<RateLimited>` is reported there.
        let convert = quote_spanned! {self.func.ret.span()=>
            ::core::convert::From::from(__memorix_limited)
        };
        quote! {
            #(#attrs)*
            #vis #sig {
                {
                    static __MEMORIX_RATE_LIMITER: #p::RateLimitMacroLimiter = #p::RateLimitMacroLimiter::new(
                        ::core::concat!(::core::module_path!(), "::", #name),
                        #rate,
                        #burst,
                        #krate::ratelimit::Algorithm::#algorithm,
                        #store,
                    );
                    let __memorix_subject = #p::KeyBuf::render(|__k: &mut #p::KeyBuf| { #(#subject)* });
                    if let ::core::result::Result::Err(__memorix_limited) =
                        __MEMORIX_RATE_LIMITER.check(&__memorix_subject).await
                    {
                        return ::core::result::Result::Err(#convert);
                    }
                }
                #(#stmts)*
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
