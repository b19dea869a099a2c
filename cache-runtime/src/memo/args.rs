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
use super::l0::PinKey;
use super::l0::{ArgFront, ARG_SEED};
use super::tier::{epoch, DEFAULT_TIER_CAPACITY};
use crate::cache::Cache;
use foldhash::fast::FixedState;
use std::hash::{BuildHasher, Hash};
use std::marker::PhantomData;
use std::sync::Arc;

/// An argument (or a tuple of argument references) usable as a typed key.
///
/// Two views: `Owned` is the whole value (what a tuple of parts is made of);
/// `Stored` is what the front keeps next to the 64-bit `front_hash` when the
/// value is the whole key. For integers, `bool` and `char` the hash is a
/// bijection of the value, so nothing more is stored (`Exact`) and an entry
/// is as small as the value it caches.
pub trait KeyPart: Hash {
    /// An owned copy of the value.
    type Owned: Clone + Send + Sync + 'static;
    /// What the front keeps to tell apart keys with one `front_hash`.
    type Stored: Clone + Send + Sync + 'static;
    /// True when `owned` was made from an equal value.
    fn eq_owned(&self, owned: &Self::Owned) -> bool;
    /// An owned copy.
    fn to_owned_part(&self) -> Self::Owned;
    /// The 64-bit hash the front files the value under.
    fn front_hash(&self, seed: &FixedState) -> u64;
    /// True when `stored` was made from an equal value with the same hash.
    fn eq_stored(&self, stored: &Self::Stored) -> bool;
    /// What the front keeps.
    fn to_stored(&self) -> Self::Stored;
}

/// The `Stored` part of a key whose [`KeyPart::front_hash`] is exact: the
/// hash is the value, so nothing else is kept (the type only keeps fronts of
/// different argument types apart).
#[derive(Debug)]
pub struct Exact<T>(PhantomData<fn() -> T>);

impl<T> Clone for Exact<T> {
    fn clone(&self) -> Self {
        Exact(PhantomData)
    }
}

/// A bijection of 64-bit values that spreads them over every bit (the map
/// takes its bucket from the low bits and its probe tag from the top ones).
#[inline]
fn mix(x: u64) -> u64 {
    let x = (x ^ 0x6d65_6d6f_7269_7821).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    x ^ (x >> 32)
}

macro_rules! exact_parts {
    ($($t:ty => |$v:ident| $bits:expr),* $(,)?) => {$(
        impl KeyPart for $t {
            type Owned = $t;
            type Stored = Exact<$t>;
            #[inline]
            fn eq_owned(&self, owned: &$t) -> bool {
                self == owned
            }
            #[inline]
            fn to_owned_part(&self) -> $t {
                *self
            }
            #[inline]
            fn front_hash(&self, _: &FixedState) -> u64 {
                let $v = *self;
                mix($bits)
            }
            #[inline]
            fn eq_stored(&self, _: &Exact<$t>) -> bool {
                true
            }
            #[inline]
            fn to_stored(&self) -> Exact<$t> {
                Exact(PhantomData)
            }
        }
    )*};
}

exact_parts! {
    u8 => |v| u64::from(v),
    u16 => |v| u64::from(v),
    u32 => |v| u64::from(v),
    u64 => |v| v,
    usize => |v| v as u64,
    i8 => |v| v as u64,
    i16 => |v| v as u64,
    i32 => |v| v as u64,
    i64 => |v| v as u64,
    isize => |v| v as u64,
    bool => |v| u64::from(v),
    char => |v| u64::from(v),
    () => |_v| 0,
}

/// Implements the `Stored` view as the whole owned value under a seeded hash.
macro_rules! stored_is_owned {
    () => {
        type Stored = Self::Owned;
        #[inline]
        fn front_hash(&self, seed: &FixedState) -> u64 {
            seed.hash_one(self)
        }
        #[inline]
        fn eq_stored(&self, stored: &Self::Owned) -> bool {
            self.eq_owned(stored)
        }
        fn to_stored(&self) -> Self::Owned {
            self.to_owned_part()
        }
    };
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
            stored_is_owned!();
        }
    )*};
}

copy_parts!(u128, i128);

impl KeyPart for str {
    type Owned = String;
    #[inline]
    fn eq_owned(&self, owned: &String) -> bool {
        self == owned
    }
    fn to_owned_part(&self) -> String {
        self.to_owned()
    }
    stored_is_owned!();
}

impl KeyPart for String {
    type Owned = String;
    #[inline]
    fn eq_owned(&self, owned: &String) -> bool {
        self.as_str().eq_owned(owned)
    }
    fn to_owned_part(&self) -> String {
        self.as_str().to_owned_part()
    }
    stored_is_owned!();
}

/// References and boxes are their target.
macro_rules! delegate {
    () => {
        type Owned = T::Owned;
        type Stored = T::Stored;
        #[inline]
        fn eq_owned(&self, owned: &T::Owned) -> bool {
            (**self).eq_owned(owned)
        }
        #[inline]
        fn to_owned_part(&self) -> T::Owned {
            (**self).to_owned_part()
        }
        #[inline]
        fn front_hash(&self, seed: &FixedState) -> u64 {
            (**self).front_hash(seed)
        }
        #[inline]
        fn eq_stored(&self, stored: &T::Stored) -> bool {
            (**self).eq_stored(stored)
        }
        #[inline]
        fn to_stored(&self) -> T::Stored {
            (**self).to_stored()
        }
    };
}

impl<T: KeyPart + ?Sized> KeyPart for &T {
    delegate!();
}

impl<T: KeyPart + ?Sized> KeyPart for Box<T> {
    delegate!();
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
    stored_is_owned!();
}

impl<T: KeyPart> KeyPart for [T] {
    type Owned = Vec<T::Owned>;
    fn eq_owned(&self, owned: &Vec<T::Owned>) -> bool {
        self.len() == owned.len() && self.iter().zip(owned).all(|(v, o)| v.eq_owned(o))
    }
    fn to_owned_part(&self) -> Vec<T::Owned> {
        self.iter().map(T::to_owned_part).collect()
    }
    stored_is_owned!();
}

impl<T: KeyPart> KeyPart for Vec<T> {
    type Owned = Vec<T::Owned>;
    fn eq_owned(&self, owned: &Vec<T::Owned>) -> bool {
        self.as_slice().eq_owned(owned)
    }
    fn to_owned_part(&self) -> Vec<T::Owned> {
        self.as_slice().to_owned_part()
    }
    stored_is_owned!();
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
            stored_is_owned!();
        }
    )*};
}

/// One argument: the key is that argument.
impl<A: KeyPart> KeyPart for (A,) {
    type Owned = (A::Owned,);
    type Stored = A::Stored;
    #[inline]
    fn eq_owned(&self, owned: &Self::Owned) -> bool {
        self.0.eq_owned(&owned.0)
    }
    #[inline]
    fn to_owned_part(&self) -> Self::Owned {
        (self.0.to_owned_part(),)
    }
    #[inline]
    fn front_hash(&self, seed: &FixedState) -> u64 {
        self.0.front_hash(seed)
    }
    #[inline]
    fn eq_stored(&self, stored: &A::Stored) -> bool {
        self.0.eq_stored(stored)
    }
    #[inline]
    fn to_stored(&self) -> A::Stored {
        self.0.to_stored()
    }
}

tuple_parts! {
    (A 0, B 1)
    (A 0, B 1, C 2)
    (A 0, B 1, C 2, D 3)
    (A 0, B 1, C 2, D 3, E 4)
    (A 0, B 1, C 2, D 3, E 4, F 5)
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6)
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7)
}

impl Memo {
    /// [`Memo::lookup`] for arguments that are their own key (see
    /// [`KeyPart`]): a copy under equal arguments answers before any key text
    /// is built. Reached through [`ViaArgs`](super::args::ViaArgs).
    #[inline]
    pub fn lookup_args<K: KeyPart, S: Storable>(
        &self,
        local: &'static PinKey,
        args: &K,
        cache: Option<Arc<dyn Cache>>,
        build: impl FnOnce(&mut KeyBuf),
    ) -> Lookup<S> {
        if cache.is_some() || self.spec.stamped() {
            return self.lookup(cache, build);
        }
        let hash = args.front_hash(&ARG_SEED);
        let epoch = epoch();
        match self.args_pin.get(local, hash, epoch, |stored| args.eq_stored(stored)) {
            Some(value) => Lookup::Hit(value),
            None => self.lookup_args_miss(local, hash, epoch, args, build),
        }
    }

    #[cold]
    #[inline(never)]
    fn lookup_args_miss<K: KeyPart, S: Storable>(
        &self,
        local: &'static PinKey,
        hash: u64,
        epoch: u64,
        args: &K,
        build: impl FnOnce(&mut KeyBuf),
    ) -> Lookup<S> {
        let Some(front) = self.args_front::<K::Stored, S>() else {
            return self.lookup(None, build);
        };
        let pin = &self.args_pin;
        if let Some(value) = front.get(pin, local, hash, epoch, |stored| args.eq_stored(stored)) {
            return Lookup::Hit(value);
        }
        self.lookup_with(
            None,
            build,
            |_| None,
            |_, value: &S, fresh_until| front.insert(pin, hash, args.to_stored(), value.clone(), fresh_until, epoch),
        )
    }

    /// The argument-keyed front of this function, on the same terms as
    /// [`Memo::front`] (and for one `(K, S)` pair only).
    #[inline]
    pub(super) fn args_front<K: Clone + Send + Sync + 'static, S: Storable>(&self) -> Option<&ArgFront<K, S>> {
        if self.spec.stamped() {
            return None;
        }
        self.args_front
            .get_or_init(|| Box::new(ArgFront::<K, S>::new(DEFAULT_TIER_CAPACITY)))
            .downcast_ref::<ArgFront<K, S>>()
    }
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
        pin: &'static PinKey,
        cache: Option<Arc<dyn Cache>>,
        build: B,
    ) -> Lookup<S>;
}

impl<K: KeyPart> ViaArgs for Args<'_, K> {
    #[inline]
    fn memorix_lookup<S: Storable, B: FnOnce(&mut KeyBuf)>(
        &self,
        memo: &Memo,
        pin: &'static PinKey,
        cache: Option<Arc<dyn Cache>>,
        build: B,
    ) -> Lookup<S> {
        memo.lookup_args(pin, self.0, cache, build)
    }
}

/// The fallback for any other argument types: the key-text path.
pub trait ViaKeyText {
    /// [`Memo::lookup`].
    fn memorix_lookup<S: Storable, B: FnOnce(&mut KeyBuf)>(
        &self,
        memo: &Memo,
        pin: &'static PinKey,
        cache: Option<Arc<dyn Cache>>,
        build: B,
    ) -> Lookup<S>;
}

impl<K> ViaKeyText for &Args<'_, K> {
    #[inline]
    fn memorix_lookup<S: Storable, B: FnOnce(&mut KeyBuf)>(
        &self,
        memo: &Memo,
        pin: &'static PinKey,
        cache: Option<Arc<dyn Cache>>,
        build: B,
    ) -> Lookup<S> {
        let _ = pin;
        memo.lookup(cache, build)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memo::{Adapter, MemoSpec};

    #[test]
    fn owned_copies_compare_equal_to_their_source() {
        let name = String::from("ada");
        let key = (&7u64, &name.as_str(), &Some(vec![1u8, 2]));
        let owned = key.to_owned_part();
        assert!(key.eq_owned(&owned));
        let other = (&7u64, &"bob", &Some(vec![1u8, 2]));
        assert!(!other.eq_owned(&owned));
        assert!(None::<u8>.eq_owned(&None));
        let seed = FixedState::with_seed(1);
        let hashes: std::collections::HashSet<u64> = (0..10_000u64).map(|k| (&k,).front_hash(&seed)).collect();
        assert_eq!(hashes.len(), 10_000, "integer keys hash exactly");
        assert_ne!((&1u8,).front_hash(&seed), (&2u8,).front_hash(&seed));
        assert!(!Some(1u8).eq_owned(&None));
    }

    static ARGS_MEMO: Memo = Memo::new(MemoSpec {
        name: "tests::args_square",
        ..MemoSpec::DEFAULT
    });

    #[test]
    fn a_tier_hit_is_copied_to_the_argument_keyed_front() {
        let k = 11u64;
        thread_local! {
            static PIN: super::super::ThreadPin = const { super::super::ThreadPin::new() };
        }
        let call = || match ARGS_MEMO.lookup_args::<(&u64,), u64>(&PIN, &(&k,), None, |b| b.arg(&k)) {
            Lookup::Miss(miss) => ARGS_MEMO.fill_blocking(miss, Adapter::plain(), || k * k),
            Lookup::Hit(v) => v,
        };
        assert_eq!(call(), k * k);
        assert_eq!(call(), k * k);
        let front = ARGS_MEMO.args_front::<Exact<u64>, u64>().expect("argument-keyed front");
        assert!(front.holds((&k,).front_hash(&ARG_SEED)), "the tier hit was not copied");
        assert_eq!(call(), k * k);
    }
}
