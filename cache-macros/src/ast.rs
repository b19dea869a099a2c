//! Step 2: the annotated function, modelled: receiver, named arguments,
//! async-ness and what it returns.

use crate::ctxt::Ctxt;
use proc_macro2::Span;
use syn::spanned::Spanned;
use syn::{FnArg, GenericArgument, Ident, ItemFn, Pat, PathArguments, ReturnType, Type};

/// One argument of the function (not the receiver).
pub struct Arg {
    pub ident: Ident,
    /// Declared as `impl Trait`: cannot be named in a derived key.
    pub impl_trait: Option<Span>,
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
    pub has_receiver: bool,
    pub args: Vec<Arg>,
    /// The return type as written (`()` when omitted).
    pub ret: Type,
    pub ret_kind: Return,
}

impl Func {
    /// Models `item`, reporting what memoization cannot support.
    pub fn from_item(item: ItemFn, cx: &Ctxt) -> Func {
        let mut has_receiver = false;
        let mut args = Vec::new();
        for input in &item.sig.inputs {
            match input {
                FnArg::Receiver(_) => has_receiver = true,
                FnArg::Typed(pt) => {
                    let impl_trait = matches!(*pt.ty, Type::ImplTrait(_)).then(|| pt.ty.span());
                    match &*pt.pat {
                        Pat::Ident(pi) if pi.subpat.is_none() => args.push(Arg {
                            ident: pi.ident.clone(),
                            impl_trait,
                        }),
                        other => cx.error(
                            other.span(),
                            "memoized functions need named arguments (`name: Type`); destructure inside the body",
                        ),
                    }
                }
            }
        }
        let ret: Type = match &item.sig.output {
            ReturnType::Default => syn::parse_quote!(()),
            ReturnType::Type(_, ty) => (**ty).clone(),
        };
        check_return(&ret, cx);
        let ret_kind = return_kind(&ret);
        Func {
            is_async: item.sig.asyncness.is_some(),
            has_receiver,
            args,
            ret,
            ret_kind,
            item,
        }
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
