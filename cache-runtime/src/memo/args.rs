//! Typed keys: the arguments of a memoized call as the key of its
//! per-function front, so a hit does no key formatting and no string hashing.
//!
//! Only argument types whose `Hash` / `Eq` are value identity implement
//! [`KeyPart`] (integers, `bool`, `char`, strings, and `Option`, `Vec`,
//! slices, boxes and tuples of those): for them, equal arguments always give
//! the same key text, so a typed hit can never answer for another key. Every
//! other type (user structs, generics, floats) keeps the key-text path; the
//! generated code picks the path at compile time with autoref specialization
//! ([`ViaArgs`] before [`ViaKeyText`]).

use super::call::{Lookup, Memo, Storable};
use super::key::KeyBuf;
use crate::cache::Cache;
use std::hash::Hash;
use std::sync::Arc;

/// An argument (or a tuple of argument references) usable as a typed key.
pub trait KeyPart: Hash {
    /// What the front keeps of it.
    type Owned: Send + Sync + 'static;
    /// True when `owned` was made from an equal value.
    fn eq_owned(&self, owned: &Self::Owned) -> bool;
    /// An owned copy, for the front.
    fn to_owned_part(&self) -> Self::Owned;
}

macro_rules! copy_parts {
    ($($t:ty),* $(,)?) => {$(
        impl KeyPart for $t {
            type Owned = $t;
            #[inline]
            fn eq_owned(&self, owned: &$t) -> bool {
                self == owned
            }
            #[inline]
            fn to_owned_part(&self) -> $t {
                *self
            }
        }
    )*};
}

copy_parts!(
    u8,
    u16,
    u32,
    u64,
    u128,
    usize,
    i8,
    i16,
    i32,
    i64,
    i128,
    isize,
    bool,
    char,
    ()
);

impl KeyPart for str {
    type Owned = String;
    #[inline]
    fn eq_owned(&self, owned: &String) -> bool {
        self == owned
    }
    fn to_owned_part(&self) -> String {
        self.to_owned()
    }
}

impl KeyPart for String {
    type Owned = String;
    #[inline]
    fn eq_owned(&self, owned: &String) -> bool {
        self == owned
    }
    fn to_owned_part(&self) -> String {
        self.clone()
    }
}

impl<T: KeyPart + ?Sized> KeyPart for &T {
    type Owned = T::Owned;
    #[inline]
    fn eq_owned(&self, owned: &T::Owned) -> bool {
        (**self).eq_owned(owned)
    }
    #[inline]
    fn to_owned_part(&self) -> T::Owned {
        (**self).to_owned_part()
    }
}

impl<T: KeyPart + ?Sized> KeyPart for Box<T> {
    type Owned = T::Owned;
    #[inline]
    fn eq_owned(&self, owned: &T::Owned) -> bool {
        (**self).eq_owned(owned)
    }
    fn to_owned_part(&self) -> T::Owned {
        (**self).to_owned_part()
    }
}

impl<T: KeyPart> KeyPart for Option<T> {
    type Owned = Option<T::Owned>;
    #[inline]
    fn eq_owned(&self, owned: &Option<T::Owned>) -> bool {
        match (self, owned) {
            (Some(v), Some(o)) => v.eq_owned(o),
            (None, None) => true,
            _ => false,
        }
    }
    fn to_owned_part(&self) -> Option<T::Owned> {
        self.as_ref().map(T::to_owned_part)
    }
}

impl<T: KeyPart> KeyPart for [T] {
    type Owned = Vec<T::Owned>;
    fn eq_owned(&self, owned: &Vec<T::Owned>) -> bool {
        self.len() == owned.len() && self.iter().zip(owned).all(|(v, o)| v.eq_owned(o))
    }
    fn to_owned_part(&self) -> Vec<T::Owned> {
        self.iter().map(T::to_owned_part).collect()
    }
}

impl<T: KeyPart> KeyPart for Vec<T> {
    type Owned = Vec<T::Owned>;
    fn eq_owned(&self, owned: &Vec<T::Owned>) -> bool {
        self.as_slice().eq_owned(owned)
    }
    fn to_owned_part(&self) -> Vec<T::Owned> {
        self.as_slice().to_owned_part()
    }
}

macro_rules! tuple_parts {
    ($(($($t:ident $i:tt),+))*) => {$(
        impl<$($t: KeyPart),+> KeyPart for ($($t,)+) {
            type Owned = ($($t::Owned,)+);
            #[inline]
            fn eq_owned(&self, owned: &Self::Owned) -> bool {
                $(self.$i.eq_owned(&owned.$i))&&+
            }
            #[inline]
            fn to_owned_part(&self) -> Self::Owned {
                ($(self.$i.to_owned_part(),)+)
            }
        }
    )*};
}

tuple_parts! {
    (A 0)
    (A 0, B 1)
    (A 0, B 1, C 2)
    (A 0, B 1, C 2, D 3)
    (A 0, B 1, C 2, D 3, E 4)
    (A 0, B 1, C 2, D 3, E 4, F 5)
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6)
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7)
}

/// The key arguments of one call, as the generated code hands them over:
/// a tuple of references to the arguments (or template placeholders).
#[derive(Debug)]
pub struct Args<'a, K>(pub &'a K);

/// Chosen when the key arguments are a [`KeyPart`]: the call probes the
/// function's argument-keyed front first.
pub trait ViaArgs {
    /// [`Memo::lookup`], with the argument-keyed front in front of it.
    fn memorix_lookup<S: Storable, B: FnOnce(&mut KeyBuf)>(
        &self,
        memo: &Memo,
        cache: Option<Arc<dyn Cache>>,
        build: B,
    ) -> Lookup<S>;
}

impl<K: KeyPart> ViaArgs for Args<'_, K> {
    #[inline]
    fn memorix_lookup<S: Storable, B: FnOnce(&mut KeyBuf)>(
        &self,
        memo: &Memo,
        cache: Option<Arc<dyn Cache>>,
        build: B,
    ) -> Lookup<S> {
        memo.lookup_args(self.0, cache, build)
    }
}

/// The fallback for any other argument types: the key-text path.
pub trait ViaKeyText {
    /// [`Memo::lookup`].
    fn memorix_lookup<S: Storable, B: FnOnce(&mut KeyBuf)>(
        &self,
        memo: &Memo,
        cache: Option<Arc<dyn Cache>>,
        build: B,
    ) -> Lookup<S>;
}

impl<K> ViaKeyText for &Args<'_, K> {
    #[inline]
    fn memorix_lookup<S: Storable, B: FnOnce(&mut KeyBuf)>(
        &self,
        memo: &Memo,
        cache: Option<Arc<dyn Cache>>,
        build: B,
    ) -> Lookup<S> {
        memo.lookup(cache, build)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owned_copies_compare_equal_to_their_source() {
        let name = String::from("ada");
        let key = (&7u64, &name.as_str(), &Some(vec![1u8, 2]));
        let owned = key.to_owned_part();
        assert!(key.eq_owned(&owned));
        let other = (&7u64, &"bob", &Some(vec![1u8, 2]));
        assert!(!other.eq_owned(&owned));
        assert!(None::<u8>.eq_owned(&None));
        assert!(!Some(1u8).eq_owned(&None));
    }
}
