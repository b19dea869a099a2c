//! Cache keys of memoized functions.
//!
//! A key is `prefix + name + ":" + arguments` when derived from all arguments,
//! or `prefix + template` when the attribute gives `key = "..."`. The prefix
//! is the function's `prefix = "..."`, or else the process-wide namespace
//! ([`DEFAULT_NAMESPACE`] unless [`set_namespace`] chose another), so memoized
//! entries never collide with bare keys of other code in a shared database.
//! A generic function's key names its instantiated type and const parameters
//! first (`<u8>:`), so one instantiation never answers for another. Arguments are
//! written with a small serde serializer into a compact, stable text: the same
//! arguments give the same key in every process and every run (no `Hash`, no
//! addresses, no random seeds). Strings escape the separators, so `("a:b", 1)`
//! and `("a", "b:1")` never collide. Argument text longer than
//! [`MAX_ARGS_LEN`] bytes is replaced by `#` and its SHA-1.

use arc_swap::ArcSwap;
use once_cell::sync::Lazy;
use serde::ser::{self, Serialize};
use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::sync::Arc;

/// The namespace of memoized keys when neither `prefix = "..."` nor
/// [`set_namespace`] gives another.
pub const DEFAULT_NAMESPACE: &str = "memorix:";

static NAMESPACE: Lazy<ArcSwap<String>> = Lazy::new(|| ArcSwap::from_pointee(DEFAULT_NAMESPACE.to_owned()));

/// Sets the namespace every memoized key starts with, unless its attribute
/// gives `prefix = "..."` (default [`DEFAULT_NAMESPACE`], `"memorix:"`). Call
/// it once at startup, before memoized functions run: entries written under
/// the previous namespace are not found any more. An empty namespace gives
/// bare keys.
///
/// ```
/// memorix_runtime::memo::set_namespace("billing:");
/// assert_eq!(memorix_runtime::memo::namespace(), "billing:");
/// # memorix_runtime::memo::set_namespace(memorix_runtime::memo::DEFAULT_NAMESPACE);
/// ```
pub fn set_namespace(namespace: impl Into<String>) {
    NAMESPACE.store(Arc::new(namespace.into()));
    // Typed copies are filed by arguments, not by key: drop them.
    super::tier::advance_epoch();
}

/// The namespace of memoized keys (see [`set_namespace`]).
pub fn namespace() -> String {
    NAMESPACE.load().as_ref().clone()
}

/// Appends the namespace to `buf`.
#[inline]
pub(crate) fn push_namespace(buf: &mut KeyBuf) {
    buf.lit(&NAMESPACE.load());
}

/// Argument text longer than this is hashed.
pub const MAX_ARGS_LEN: usize = 200;

/// A value that can be written into a cache key: anything `Serialize`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be part of a cache key: key values must implement `serde::Serialize`",
    label = "this value is written into the key",
    note = "derive `serde::Serialize` for it, or give `key = \"...\"` naming the arguments (or fields) that identify the result"
)]
pub trait KeyValue: Serialize {}

// Not recommended: a missing `Serialize` is reported as the key rule above.
#[diagnostic::do_not_recommend]
impl<T: Serialize + ?Sized> KeyValue for T {}

/// The key being built: the generated code pushes template text and arguments.
#[derive(Debug, Default)]
pub struct KeyBuf {
    buf: String,
    /// Where the argument text starts (after prefix and name).
    args_start: usize,
    args_started: bool,
}

impl KeyBuf {
    fn reset(&mut self) {
        self.buf.clear();
        self.args_start = 0;
        self.args_started = false;
    }

    /// Renders a key template on its own (a `#[rate_limit]` subject): the
    /// same text `build` would add to a memoized key.
    pub fn render(build: impl FnOnce(&mut KeyBuf)) -> String {
        build_key(|k| {
            k.begin_args();
            build(k);
        })
    }

    /// Appends literal key text (template text, prefix, name).
    #[inline]
    pub fn lit(&mut self, text: &str) {
        self.buf.push_str(text);
    }

    /// Marks where argument text begins; text after it is hashed when long.
    #[inline]
    pub fn begin_args(&mut self) {
        self.args_start = self.buf.len();
        self.args_started = true;
    }

    /// Appends one argument of a derived key, `:`-separated from the previous one.
    #[inline]
    pub fn arg<T: KeyValue + ?Sized>(&mut self, value: &T) {
        if self.buf.len() > self.args_start {
            self.buf.push(':');
        }
        self.part(value);
    }

    /// Appends the instantiated type parameters of a generic function
    /// (`<u8,&str>`), `:`-separated from what precedes them.
    pub fn types(&mut self, names: &[&str]) {
        if self.buf.len() > self.args_start {
            self.buf.push(':');
        }
        self.buf.push('<');
        for (i, name) in names.iter().enumerate() {
            if i > 0 {
                self.buf.push(',');
            }
            self.buf.push_str(name);
        }
        self.buf.push('>');
    }

    /// Appends one value (a template placeholder) with no separator.
    #[inline]
    pub fn part<T: KeyValue + ?Sized>(&mut self, value: &T) {
        // A serializer that cannot fail on text output: errors only come from
        // user `Serialize` impls, and then the key still gets a marker.
        if value.serialize(KeyWriter { out: &mut self.buf }).is_err() {
            self.buf.push('!');
        }
    }

    /// The finished key, hashing long argument text.
    fn finish(&mut self) -> &str {
        if self.args_started && self.buf.len() - self.args_start > MAX_ARGS_LEN {
            let digest = sha1_smol::Sha1::from(&self.buf.as_bytes()[self.args_start..])
                .digest()
                .to_string();
            self.buf.truncate(self.args_start);
            self.buf.push('#');
            self.buf.push_str(&digest);
        }
        &self.buf
    }
}

thread_local! {
    static SCRATCH: RefCell<KeyBuf> = RefCell::new(KeyBuf::default());
}

/// Builds a key with `build` and hands it to `use_key`, reusing a per-thread
/// buffer so that a cache hit allocates nothing.
#[inline]
pub(crate) fn with_key<R>(build: impl FnOnce(&mut KeyBuf), use_key: impl FnOnce(&str) -> R) -> R {
    let mut build = Some(build);
    let mut use_key = Some(use_key);
    let reused = SCRATCH.try_with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => {
            buf.reset();
            (build.take().expect("called once"))(&mut buf);
            Some((use_key.take().expect("called once"))(buf.finish()))
        }
        Err(_) => None,
    });
    match reused {
        Ok(Some(out)) => out,
        // Re-entrant call (a Serialize impl calling a memoized function) or
        // thread teardown: use a fresh buffer.
        _ => {
            let mut buf = KeyBuf::default();
            if let Some(build) = build.take() {
                build(&mut buf);
            }
            let use_key = use_key
                .take()
                .expect("not consumed when the scratch buffer was unavailable");
            use_key(buf.finish())
        }
    }
}

/// Builds an owned key.
pub(crate) fn build_key(build: impl FnOnce(&mut KeyBuf)) -> String {
    with_key(build, str::to_owned)
}

/// The error of the key writer: only user `Serialize` impls produce one.
#[derive(Debug)]
pub struct KeyError;

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("argument could not be written into a cache key")
    }
}

impl std::error::Error for KeyError {}

impl ser::Error for KeyError {
    fn custom<T: fmt::Display>(_msg: T) -> Self {
        KeyError
    }
}

/// Writes a value as compact key text.
struct KeyWriter<'a> {
    out: &'a mut String,
}

fn push_u64(out: &mut String, mut v: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    for &d in &digits[i..] {
        out.push(d as char);
    }
}

fn push_escaped(out: &mut String, s: &str) {
    if !s
        .bytes()
        .any(|b| matches!(b, b':' | b',' | b'[' | b']' | b'{' | b'}' | b'=' | b'\\'))
    {
        out.push_str(s);
        return;
    }
    for c in s.chars() {
        if matches!(c, ':' | ',' | '[' | ']' | '{' | '}' | '=' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
}

type R = Result<(), KeyError>;

/// Sequence / map / struct writer: separates items with `,`.
struct Compound<'a> {
    out: &'a mut String,
    first: bool,
    close: char,
}

impl Compound<'_> {
    fn sep(&mut self) {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
    }
    fn item<T: Serialize + ?Sized>(&mut self, v: &T) -> R {
        self.sep();
        v.serialize(KeyWriter { out: self.out })
    }
    fn field<T: Serialize + ?Sized>(&mut self, name: &str, v: &T) -> R {
        self.sep();
        self.out.push_str(name);
        self.out.push('=');
        v.serialize(KeyWriter { out: self.out })
    }
    fn end(self) -> R {
        self.out.push(self.close);
        Ok(())
    }
}

impl<'a> ser::Serializer for KeyWriter<'a> {
    type Ok = ();
    type Error = KeyError;
    type SerializeSeq = Compound<'a>;
    type SerializeTuple = Compound<'a>;
    type SerializeTupleStruct = Compound<'a>;
    type SerializeTupleVariant = Compound<'a>;
    type SerializeMap = Compound<'a>;
    type SerializeStruct = Compound<'a>;
    type SerializeStructVariant = Compound<'a>;

    fn serialize_bool(self, v: bool) -> R {
        self.out.push_str(if v { "true" } else { "false" });
        Ok(())
    }
    fn serialize_i8(self, v: i8) -> R {
        self.serialize_i64(v.into())
    }
    fn serialize_i16(self, v: i16) -> R {
        self.serialize_i64(v.into())
    }
    fn serialize_i32(self, v: i32) -> R {
        self.serialize_i64(v.into())
    }
    fn serialize_i64(self, v: i64) -> R {
        if v < 0 {
            self.out.push('-');
        }
        push_u64(self.out, v.unsigned_abs());
        Ok(())
    }
    fn serialize_i128(self, v: i128) -> R {
        write!(self.out, "{v}").map_err(|_| KeyError)
    }
    fn serialize_u8(self, v: u8) -> R {
        self.serialize_u64(v.into())
    }
    fn serialize_u16(self, v: u16) -> R {
        self.serialize_u64(v.into())
    }
    fn serialize_u32(self, v: u32) -> R {
        self.serialize_u64(v.into())
    }
    fn serialize_u64(self, v: u64) -> R {
        push_u64(self.out, v);
        Ok(())
    }
    fn serialize_u128(self, v: u128) -> R {
        write!(self.out, "{v}").map_err(|_| KeyError)
    }
    fn serialize_f32(self, v: f32) -> R {
        write!(self.out, "{v:?}").map_err(|_| KeyError)
    }
    fn serialize_f64(self, v: f64) -> R {
        write!(self.out, "{v:?}").map_err(|_| KeyError)
    }
    fn serialize_char(self, v: char) -> R {
        push_escaped(self.out, v.encode_utf8(&mut [0; 4]));
        Ok(())
    }
    fn serialize_str(self, v: &str) -> R {
        push_escaped(self.out, v);
        Ok(())
    }
    fn serialize_bytes(self, v: &[u8]) -> R {
        self.out.push_str("0x");
        for b in v {
            write!(self.out, "{b:02x}").map_err(|_| KeyError)?;
        }
        Ok(())
    }
    fn serialize_none(self) -> R {
        self.out.push('~');
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> R {
        value.serialize(self)
    }
    fn serialize_unit(self) -> R {
        self.out.push_str("()");
        Ok(())
    }
    fn serialize_unit_struct(self, name: &'static str) -> R {
        self.out.push_str(name);
        Ok(())
    }
    fn serialize_unit_variant(self, _name: &'static str, _index: u32, variant: &'static str) -> R {
        self.out.push_str(variant);
        Ok(())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _name: &'static str, value: &T) -> R {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> R {
        self.out.push_str(variant);
        self.out.push('[');
        value.serialize(KeyWriter { out: self.out })?;
        self.out.push(']');
        Ok(())
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<Compound<'a>, KeyError> {
        self.out.push('[');
        Ok(Compound {
            out: self.out,
            first: true,
            close: ']',
        })
    }
    fn serialize_tuple(self, len: usize) -> Result<Compound<'a>, KeyError> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(self, _name: &'static str, len: usize) -> Result<Compound<'a>, KeyError> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Compound<'a>, KeyError> {
        self.out.push_str(variant);
        self.serialize_seq(Some(len))
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<Compound<'a>, KeyError> {
        self.out.push('{');
        Ok(Compound {
            out: self.out,
            first: true,
            close: '}',
        })
    }
    fn serialize_struct(self, _name: &'static str, len: usize) -> Result<Compound<'a>, KeyError> {
        self.serialize_map(Some(len))
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Compound<'a>, KeyError> {
        self.out.push_str(variant);
        self.serialize_map(Some(len))
    }
}

macro_rules! compound {
    ($trait:ident, $method:ident) => {
        impl ser::$trait for Compound<'_> {
            type Ok = ();
            type Error = KeyError;
            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> R {
                self.item(value)
            }
            fn end(self) -> R {
                Compound::end(self)
            }
        }
    };
}
compound!(SerializeSeq, serialize_element);
compound!(SerializeTuple, serialize_element);
compound!(SerializeTupleStruct, serialize_field);
compound!(SerializeTupleVariant, serialize_field);

impl ser::SerializeMap for Compound<'_> {
    type Ok = ();
    type Error = KeyError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> R {
        self.item(key)?;
        self.out.push('=');
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> R {
        value.serialize(KeyWriter { out: self.out })
    }
    fn end(self) -> R {
        Compound::end(self)
    }
}

impl ser::SerializeStruct for Compound<'_> {
    type Ok = ();
    type Error = KeyError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, name: &'static str, value: &T) -> R {
        self.field(name, value)
    }
    fn end(self) -> R {
        Compound::end(self)
    }
}

impl ser::SerializeStructVariant for Compound<'_> {
    type Ok = ();
    type Error = KeyError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, name: &'static str, value: &T) -> R {
        self.field(name, value)
    }
    fn end(self) -> R {
        Compound::end(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn derived(args: &[&dyn erased_serde::Serialize]) -> String {
        build_key(|k| {
            k.lit("f:");
            k.begin_args();
            for a in args {
                k.arg(a);
            }
        })
    }

    #[test]
    fn derived_keys_are_compact_and_unambiguous() {
        assert_eq!(derived(&[&42u64, &-7i32, &"en"]), "f:42:-7:en");
        assert_ne!(derived(&[&"a:b", &1]), derived(&[&"a", &"b:1"]));
        assert_eq!(derived(&[&Some(vec![1u8, 2]), &None::<u8>]), "f:[1,2]:~");
        assert_eq!(derived(&[&(1.5f64, true)]), "f:[1.5,true]");
    }

    #[test]
    fn long_argument_text_is_hashed_stably() {
        let long = "x".repeat(500);
        let key = derived(&[&long]);
        assert!(key.starts_with("f:#") && key.len() == 3 + 40, "{key}");
        assert_eq!(key, derived(&[&long]));
    }

    #[test]
    fn reentrant_key_building_falls_back_to_a_fresh_buffer() {
        let outer = with_key(
            |k| {
                let inner = build_key(|k2| k2.lit("inner"));
                k.lit(&inner);
            },
            str::to_owned,
        );
        assert_eq!(outer, "inner");
    }
}
