//! Step 2: the annotated function, modelled: receiver, named arguments,
//! async-ness and what it returns.

use crate::ctxt::Ctxt;
use proc_macro2::Span;
use syn::spanned::Spanned;
use syn::{FnArg, GenericArgument, GenericParam, Ident, ItemFn, Pat, PathArguments, ReturnType, Type};

/// One argument of the function (not the receiver).
pub struct Arg {
    pub ident: Ident,
    /// The declared type.
    pub ty: Type,
    /// Declared as `impl Trait`: cannot be named in a derived key.
    pub impl_trait: Option<Span>,
    /// Declared as `&mut T`: a cache hit would skip the body's changes to it.
    pub mut_ref: Option<Span>,
}

/// The `self` receiver of a method.
pub struct Receiver {
    pub span: Span,
    /// `&mut self`: a cache hit would skip the body's changes to `self`.
    pub is_mut_ref: bool,
}

/// What the function returns, as far as caching cares.
pub enum Return {
    /// `Result<T, E>`: `Ok` values are cached by default.
    Result { ok: Type },
    /// `Option<T>`: `Some` values are cached by default.
    Option { inner: Type },
    /// Anything else, including `()`.
    Plain,
}

/// The function under the attribute.
pub struct Func {
    pub item: ItemFn,
    pub is_async: bool,
    pub receiver: Option<Receiver>,
    pub args: Vec<Arg>,
    /// Type and const parameters, by name: a derived key names their
    /// instantiation so one generic function never shares entries across types.
    pub type_params: Vec<Ident>,
    pub const_params: Vec<Ident>,
    /// The return type as written (`()` when omitted).
    pub ret: Type,
    pub ret_kind: Return,
}

impl Func {
    /// Models `item`, reporting what memoization cannot support (`memo`:
    /// for `#[cached]`, `#[cache_put]` and `#[cache_evict]`).
    pub fn from_item(item: ItemFn, memo: bool, cx: &Ctxt) -> Func {
        let mut receiver = None;
        let mut args = Vec::new();
        for input in &item.sig.inputs {
            match input {
                FnArg::Receiver(r) => {
                    receiver = Some(Receiver {
                        span: r.span(),
                        is_mut_ref: r.reference.is_some() && r.mutability.is_some(),
                    })
                }
                FnArg::Typed(pt) => {
                    let impl_trait = matches!(*pt.ty, Type::ImplTrait(_)).then(|| pt.ty.span());
                    let mut_ref = match &*pt.ty {
                        Type::Reference(r) if r.mutability.is_some() => Some(r.span()),
                        _ => None,
                    };
                    match &*pt.pat {
                        Pat::Ident(pi) if pi.subpat.is_none() => args.push(Arg {
                            ident: pi.ident.clone(),
                            ty: (*pt.ty).clone(),
                            impl_trait,
                            mut_ref,
                        }),
                        other if memo => cx.error(
                            other.span(),
                            "memoized functions need named arguments (`name: Type`); destructure inside the body",
                        ),
                        // Not nameable in a key; `check` says so if the key tries.
                        _ => {}
                    }
                }
            }
        }
        let ret: Type = match &item.sig.output {
            ReturnType::Default => syn::parse_quote!(()),
            ReturnType::Type(_, ty) => (**ty).clone(),
        };
        if memo {
            check_return(&ret, cx);
        }
        let ret_kind = return_kind(&ret);
        let mut type_params = Vec::new();
        let mut const_params = Vec::new();
        for param in &item.sig.generics.params {
            match param {
                GenericParam::Type(t) => type_params.push(t.ident.clone()),
                GenericParam::Const(c) => const_params.push(c.ident.clone()),
                GenericParam::Lifetime(_) => {}
            }
        }
        Func {
            is_async: item.sig.asyncness.is_some(),
            receiver,
            args,
            type_params,
            const_params,
            ret,
            ret_kind,
            item,
        }
    }

    /// True for a method (`self`, `&self`, `&mut self`).
    pub fn has_receiver(&self) -> bool {
        self.receiver.is_some()
    }

    /// True when the function has type or const parameters.
    pub fn is_generic(&self) -> bool {
        !self.type_params.is_empty() || !self.const_params.is_empty()
    }

    /// The argument named `name`, if any.
    pub fn arg(&self, name: &str) -> Option<&Arg> {
        self.args.iter().find(|a| a.ident == name)
    }
}

/// Rejects return types that cannot be stored: references and opaque types.
fn check_return(ret: &Type, cx: &Ctxt) {
    match ret {
        Type::Reference(r) => cx.error(
            r.span(),
            "a memoized function cannot return a reference: cached values are owned and outlive the call; \
             return an owned type (`String`, `Vec<T>`, `Arc<T>`)",
        ),
        Type::ImplTrait(t) => cx.error(
            t.span(),
            "a memoized function cannot return `impl Trait`: the cached type must be nameable; return a concrete type",
        ),
        _ => {}
    }
}

fn return_kind(ret: &Type) -> Return {
    let Type::Path(tp) = ret else { return Return::Plain };
    if tp.qself.is_some() {
        return Return::Plain;
    }
    let Some(last) = tp.path.segments.last() else {
        return Return::Plain;
    };
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return Return::Plain;
    };
    let first = args.args.iter().find_map(|a| match a {
        GenericArgument::Type(t) => Some(t.clone()),
        _ => None,
    });
    match (last.ident.to_string().as_str(), first) {
        ("Result", Some(ok)) => Return::Result { ok },
        ("Option", Some(inner)) => Return::Option { inner },
        _ => Return::Plain,
    }
}
