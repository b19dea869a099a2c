//! How deeply a pickle nests, measured before serde-pickle sees it.
//!
//! serde-pickle parses opcodes with a loop, but then drops, clones and
//! deserializes the resulting value tree recursively, with no depth limit: a
//! stored value of 100 KB of nested lists overflows the stack and aborts the
//! process. This scan walks the opcodes without building values: each stack
//! item is a leaf, a memo reference, or a container in a small arena that
//! keeps only its children's indices and its height. It mirrors the points
//! where serde-pickle copies a memoized value into the tree (`DUP`, `REDUCE`,
//! memoizing a reference) and where it mutates one in place (`APPEND`,
//! `SETITEM`, ... through a reference), so the heights it computes are the
//! heights of serde-pickle's own values:
//!
//! - every container built during the parse is at most
//!   [`MAX_DECODE_DEPTH`](super::MAX_DECODE_DEPTH) high (bounds dropping and cloning);
//! - the final value, with memo references followed as deserialization
//!   follows them, nests at most [`MAX_DECODE_DEPTH`](super::MAX_DECODE_DEPTH) deep (bounds
//!   deserializing). A value that contains itself is refused too; serde-pickle
//!   refuses it anyway.
//!
//! Anything the scan does not understand is refused: serde-pickle would
//! refuse it as well, and refusing keeps the scan and the parser in step.

use super::MAX_DECODE_DEPTH;
use std::collections::HashMap;

/// Why a pickle was refused before decoding.
pub(super) type ScanError = String;

#[derive(Debug, Clone, Copy)]
enum Item {
    /// A scalar, a string, a global: nothing nests inside.
    Leaf,
    /// A container in the arena.
    Node(u32),
    /// A memo reference: a leaf while parsing, followed when deserializing.
    Ref(u32),
}

#[derive(Debug, Default)]
struct Node {
    /// Containers directly nested, counting this one (memo references count 0).
    height: u32,
    children: Vec<Item>,
}

#[derive(Default)]
struct Scan<'a> {
    bytes: &'a [u8],
    pos: usize,
    stack: Vec<Item>,
    /// Stack lengths at each `MARK`.
    marks: Vec<usize>,
    nodes: Vec<Node>,
    /// Memo ids are small integers the pickle chose: no need for SipHash.
    memo: HashMap<u32, Item, foldhash::fast::RandomState>,
}

/// Refuses `bytes` if decoding them would nest deeper than [`MAX_DECODE_DEPTH`].
pub(super) fn check(bytes: &[u8]) -> Result<(), ScanError> {
    let mut scan = Scan {
        bytes,
        ..Scan::default()
    };
    let value = scan.run()?;
    scan.effective_depth(value).map(|_| ())
}

fn too_deep() -> ScanError {
    format!("value nests deeper than {MAX_DECODE_DEPTH} levels")
}

fn malformed(what: &str) -> ScanError {
    format!("malformed pickle: {what}")
}

impl Scan<'_> {
    /// Runs the opcodes up to `STOP` and returns the value it pops.
    fn run(&mut self) -> Result<Item, ScanError> {
        use serde_pickle_ops::*;
        loop {
            let op = self.take(1)?[0];
            match op {
                PROTO => self.skip(1)?,
                FRAME => self.skip(8)?,
                STOP => return self.pop(),
                MARK => self.marks.push(self.stack.len()),
                POP => match self.stack.len() == self.mark_base() {
                    true => drop(self.pop_mark()?),
                    false => drop(self.pop()?),
                },
                POP_MARK => drop(self.pop_mark()?),
                DUP => {
                    let top = self.resolve(self.top()?);
                    let copy = self.copy(top);
                    self.stack.push(copy);
                }
                PUT | GET => {
                    let line = self.line()?;
                    let id = std::str::from_utf8(line)
                        .ok()
                        .and_then(|s| s.parse::<u32>().ok())
                        .ok_or_else(|| malformed("bad memo index"))?;
                    self.memo_op(op == PUT, id)?;
                }
                BINPUT | BINGET => {
                    let id = u32::from(self.take(1)?[0]);
                    self.memo_op(op == BINPUT, id)?;
                }
                LONG_BINPUT | LONG_BINGET => {
                    let id = self.u32_le()?;
                    self.memo_op(op == LONG_BINPUT, id)?;
                }
                MEMOIZE => {
                    let id = u32::try_from(self.memo.len()).map_err(|_| malformed("memo too large"))?;
                    self.memo_op(true, id)?;
                }
                NONE | NEWFALSE | NEWTRUE => self.stack.push(Item::Leaf),
                INT | LONG | FLOAT | STRING | UNICODE => self.leaf_after(Self::skip_line)?,
                BINFLOAT => self.leaf_after(|s| s.skip(8))?,
                BININT => self.leaf_after(|s| s.skip(4))?,
                BININT1 => self.leaf_after(|s| s.skip(1))?,
                BININT2 => self.leaf_after(|s| s.skip(2))?,
                LONG1 | SHORT_BINBYTES | SHORT_BINSTRING | SHORT_BINUNICODE => self.leaf_after(|s| {
                    let n = s.take(1)?[0];
                    s.skip(usize::from(n))
                })?,
                LONG4 | BINSTRING => self.leaf_after(|s| {
                    let n = usize::try_from(s.u32_le()? as i32).map_err(|_| malformed("negative length"))?;
                    s.skip(n)
                })?,
                BINBYTES | BINUNICODE => self.leaf_after(|s| {
                    let n = s.u32_le()? as usize;
                    s.skip(n)
                })?,
                BINBYTES8 | BINUNICODE8 | BYTEARRAY8 => self.leaf_after(|s| {
                    let mut len = [0u8; 8];
                    len.copy_from_slice(s.take(8)?);
                    let n = usize::try_from(u64::from_le_bytes(len)).map_err(|_| malformed("length too large"))?;
                    s.skip(n)
                })?,
                EMPTY_TUPLE | EMPTY_LIST | EMPTY_DICT | EMPTY_SET => self.push_container(Vec::new())?,
                TUPLE1 | TUPLE2 | TUPLE3 => {
                    let n = usize::from(op - TUPLE1 + 1);
                    let base = self.stack.len().checked_sub(n).filter(|b| *b >= self.mark_base());
                    let base = base.ok_or_else(|| malformed("stack underflow"))?;
                    let items = self.stack.split_off(base);
                    self.push_container(items)?;
                }
                TUPLE | LIST | DICT | FROZENSET => {
                    let items = self.pop_mark()?;
                    self.push_container(items)?;
                }
                APPEND => {
                    let value = self.pop()?;
                    self.extend_top(vec![value])?;
                }
                SETITEM => {
                    let value = self.pop()?;
                    let key = self.pop()?;
                    self.extend_top(vec![key, value])?;
                }
                APPENDS | SETITEMS | ADDITEMS => {
                    let items = self.pop_mark()?;
                    self.extend_top(items)?;
                }
                GLOBAL => {
                    self.skip_line()?;
                    self.leaf_after(Self::skip_line)?;
                }
                STACK_GLOBAL => {
                    self.pop()?;
                    self.pop()?;
                    self.stack.push(Item::Leaf);
                }
                // `set(list)`, `list(list)`, `frozenset(list)` make a copy of
                // the argument tuple's last item; every other global makes a
                // leaf or an empty dict, never deeper. Leaves are not kept, so
                // the last container stands in: it may over-estimate the
                // depth, never under-estimate it.
                REDUCE => {
                    let args = self.pop()?;
                    self.pop()?;
                    let last = match self.resolve(args) {
                        Item::Node(i) => self.nodes[i as usize].children.last().copied(),
                        _ => None,
                    };
                    match last.map(|item| self.resolve(item)) {
                        Some(node @ Item::Node(_)) => {
                            let copy = self.copy(node);
                            self.stack.push(copy);
                        }
                        _ => self.push_container(Vec::new())?,
                    }
                }
                // Class instances become an empty dict (their state is dropped).
                INST => {
                    self.skip_line()?;
                    self.skip_line()?;
                    self.pop_mark()?;
                    self.push_container(Vec::new())?;
                }
                OBJ => {
                    self.pop_mark()?;
                    self.pop()?;
                    self.push_container(Vec::new())?;
                }
                NEWOBJ | NEWOBJ_EX => {
                    for _ in 0..(if op == NEWOBJ { 2 } else { 3 }) {
                        self.pop()?;
                    }
                    self.push_container(Vec::new())?;
                }
                BUILD => {
                    let state = self.pop()?;
                    self.pop()?;
                    self.stack.push(state);
                }
                other => return Err(malformed(&format!("unsupported opcode 0x{other:02x}"))),
            }
        }
    }

    fn take(&mut self, n: usize) -> Result<&[u8], ScanError> {
        let end = self.pos.checked_add(n).filter(|end| *end <= self.bytes.len());
        let end = end.ok_or_else(|| malformed("truncated"))?;
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn skip(&mut self, n: usize) -> Result<(), ScanError> {
        self.take(n).map(|_| ())
    }

    fn u32_le(&mut self) -> Result<u32, ScanError> {
        let mut word = [0u8; 4];
        word.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(word))
    }

    fn line(&mut self) -> Result<&[u8], ScanError> {
        let rest = &self.bytes[self.pos..];
        let len = rest
            .iter()
            .position(|b| *b == b'\n')
            .ok_or_else(|| malformed("unterminated line"))?;
        self.pos += len + 1;
        Ok(&rest[..len])
    }

    fn skip_line(&mut self) -> Result<(), ScanError> {
        self.line().map(|_| ())
    }

    fn leaf_after(&mut self, read: impl FnOnce(&mut Self) -> Result<(), ScanError>) -> Result<(), ScanError> {
        read(self)?;
        self.stack.push(Item::Leaf);
        Ok(())
    }

    fn mark_base(&self) -> usize {
        self.marks.last().copied().unwrap_or(0)
    }

    fn pop(&mut self) -> Result<Item, ScanError> {
        if self.stack.len() <= self.mark_base() {
            return Err(malformed("stack underflow"));
        }
        self.stack.pop().ok_or_else(|| malformed("stack underflow"))
    }

    fn pop_mark(&mut self) -> Result<Vec<Item>, ScanError> {
        let base = self.marks.pop().ok_or_else(|| malformed("no mark"))?;
        Ok(self.stack.split_off(base))
    }

    fn top(&self) -> Result<Item, ScanError> {
        match self.stack.len() > self.mark_base() {
            true => Ok(self.stack[self.stack.len() - 1]),
            false => Err(malformed("stack underflow")),
        }
    }

    /// `put`: moves the stack top into the memo (copying a referenced value,
    /// as serde-pickle does) and leaves a reference. `get`: pushes a reference.
    fn memo_op(&mut self, put: bool, id: u32) -> Result<(), ScanError> {
        if put {
            let item = self.pop()?;
            let item = match item {
                Item::Ref(_) => {
                    let target = self.resolve(item);
                    self.copy(target)
                }
                other => other,
            };
            self.memo.insert(id, item);
        } else if !self.memo.contains_key(&id) {
            return Err(malformed("reference to a missing memo entry"));
        }
        self.stack.push(Item::Ref(id));
        Ok(())
    }

    /// A memo reference's value; other items as they are.
    fn resolve(&self, item: Item) -> Item {
        match item {
            Item::Ref(id) => self.memo.get(&id).copied().unwrap_or(Item::Leaf),
            other => other,
        }
    }

    /// A new root with the same children: what cloning a value yields. The
    /// children are never mutated again, so sharing their indices is exact.
    fn copy(&mut self, item: Item) -> Item {
        match item {
            Item::Node(i) => {
                let node = &self.nodes[i as usize];
                let copy = Node {
                    height: node.height,
                    children: node.children.clone(),
                };
                self.nodes.push(copy);
                Item::Node((self.nodes.len() - 1) as u32)
            }
            other => other,
        }
    }

    fn height(&self, item: Item) -> u32 {
        match item {
            Item::Node(i) => self.nodes[i as usize].height,
            Item::Leaf | Item::Ref(_) => 0,
        }
    }

    fn push_container(&mut self, children: Vec<Item>) -> Result<(), ScanError> {
        let index = u32::try_from(self.nodes.len()).map_err(|_| malformed("too many containers"))?;
        self.nodes.push(Node::default());
        self.stack.push(Item::Node(index));
        self.add_children(index, children)
    }

    /// `APPEND` and friends change the container on top of the stack, or the
    /// memoized one it references, in place.
    fn extend_top(&mut self, children: Vec<Item>) -> Result<(), ScanError> {
        match self.resolve(self.top()?) {
            Item::Node(index) => self.add_children(index, children),
            _ => Err(malformed("items added to a non-container")),
        }
    }

    /// Leaves are not kept: only containers and references can add depth.
    fn add_children(&mut self, index: u32, children: Vec<Item>) -> Result<(), ScanError> {
        let below = children.iter().map(|c| self.height(*c)).max().unwrap_or(0);
        let node = &mut self.nodes[index as usize];
        node.height = node.height.max(below + 1);
        node.children
            .extend(children.into_iter().filter(|c| !matches!(c, Item::Leaf)));
        match node.height as usize > MAX_DECODE_DEPTH {
            true => Err(too_deep()),
            false => Ok(()),
        }
    }

    /// Depth of `value` with memo references followed, without recursion.
    fn effective_depth(&self, value: Item) -> Result<u32, ScanError> {
        #[derive(Clone, Copy)]
        enum Seen {
            No,
            OnPath,
            Depth(u32),
        }
        let Item::Node(root) = self.resolve(value) else {
            return Ok(0);
        };
        let mut seen = vec![Seen::No; self.nodes.len()];
        // (node, next child, deepest child so far)
        let mut path: Vec<(u32, usize, u32)> = vec![(root, 0, 0)];
        seen[root as usize] = Seen::OnPath;
        while let Some(frame) = path.last_mut() {
            let (node, next, deepest) = *frame;
            let children = &self.nodes[node as usize].children;
            if next < children.len() {
                frame.1 += 1;
                let Item::Node(child) = self.resolve(children[next]) else {
                    continue;
                };
                match seen[child as usize] {
                    Seen::Depth(d) => frame.2 = deepest.max(d),
                    Seen::OnPath => return Err("value contains itself (a recursive structure)".into()),
                    Seen::No => {
                        if path.len() >= MAX_DECODE_DEPTH {
                            return Err(too_deep());
                        }
                        seen[child as usize] = Seen::OnPath;
                        path.push((child, 0, 0));
                    }
                }
                continue;
            }
            let depth = deepest + 1;
            seen[node as usize] = Seen::Depth(depth);
            path.pop();
            if let Some(parent) = path.last_mut() {
                parent.2 = parent.2.max(depth);
            }
        }
        match seen[root as usize] {
            Seen::Depth(d) if d as usize <= MAX_DECODE_DEPTH => Ok(d),
            _ => Err(too_deep()),
        }
    }
}

/// The opcodes serde-pickle reads (CPython's `pickle.py` names).
mod serde_pickle_ops {
    pub(super) const MARK: u8 = b'(';
    pub(super) const STOP: u8 = b'.';
    pub(super) const POP: u8 = b'0';
    pub(super) const POP_MARK: u8 = b'1';
    pub(super) const DUP: u8 = b'2';
    pub(super) const FLOAT: u8 = b'F';
    pub(super) const INT: u8 = b'I';
    pub(super) const BININT: u8 = b'J';
    pub(super) const BININT1: u8 = b'K';
    pub(super) const LONG: u8 = b'L';
    pub(super) const BININT2: u8 = b'M';
    pub(super) const NONE: u8 = b'N';
    pub(super) const STRING: u8 = b'S';
    pub(super) const BINSTRING: u8 = b'T';
    pub(super) const SHORT_BINSTRING: u8 = b'U';
    pub(super) const UNICODE: u8 = b'V';
    pub(super) const BINUNICODE: u8 = b'X';
    pub(super) const APPEND: u8 = b'a';
    pub(super) const BUILD: u8 = b'b';
    pub(super) const GLOBAL: u8 = b'c';
    pub(super) const DICT: u8 = b'd';
    pub(super) const EMPTY_DICT: u8 = b'}';
    pub(super) const APPENDS: u8 = b'e';
    pub(super) const GET: u8 = b'g';
    pub(super) const BINGET: u8 = b'h';
    pub(super) const INST: u8 = b'i';
    pub(super) const LONG_BINGET: u8 = b'j';
    pub(super) const LIST: u8 = b'l';
    pub(super) const EMPTY_LIST: u8 = b']';
    pub(super) const OBJ: u8 = b'o';
    pub(super) const PUT: u8 = b'p';
    pub(super) const BINPUT: u8 = b'q';
    pub(super) const LONG_BINPUT: u8 = b'r';
    pub(super) const SETITEM: u8 = b's';
    pub(super) const TUPLE: u8 = b't';
    pub(super) const EMPTY_TUPLE: u8 = b')';
    pub(super) const SETITEMS: u8 = b'u';
    pub(super) const BINFLOAT: u8 = b'G';
    pub(super) const REDUCE: u8 = b'R';
    pub(super) const PROTO: u8 = 0x80;
    pub(super) const NEWOBJ: u8 = 0x81;
    pub(super) const TUPLE1: u8 = 0x85;
    pub(super) const TUPLE2: u8 = 0x86;
    pub(super) const TUPLE3: u8 = 0x87;
    pub(super) const NEWTRUE: u8 = 0x88;
    pub(super) const NEWFALSE: u8 = 0x89;
    pub(super) const LONG1: u8 = 0x8a;
    pub(super) const LONG4: u8 = 0x8b;
    pub(super) const BINBYTES: u8 = b'B';
    pub(super) const SHORT_BINBYTES: u8 = b'C';
    pub(super) const SHORT_BINUNICODE: u8 = 0x8c;
    pub(super) const BINUNICODE8: u8 = 0x8d;
    pub(super) const BINBYTES8: u8 = 0x8e;
    pub(super) const EMPTY_SET: u8 = 0x8f;
    pub(super) const ADDITEMS: u8 = 0x90;
    pub(super) const FROZENSET: u8 = 0x91;
    pub(super) const NEWOBJ_EX: u8 = 0x92;
    pub(super) const STACK_GLOBAL: u8 = 0x93;
    pub(super) const MEMOIZE: u8 = 0x94;
    pub(super) const FRAME: u8 = 0x95;
    pub(super) const BYTEARRAY8: u8 = 0x96;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` lists nested structurally, as serde-pickle writes them.
    fn nested_lists(n: usize) -> Vec<u8> {
        let mut out = vec![0x80, 3];
        out.extend(std::iter::repeat_n(b']', n));
        out.extend(std::iter::repeat_n(b'a', n - 1));
        out.push(b'.');
        out
    }

    /// `n` lists nested through the memo, as CPython's pickler writes them.
    fn memo_nested_lists(n: usize) -> Vec<u8> {
        let mut out = vec![0x80, 4];
        for _ in 0..n {
            out.extend_from_slice(&[b']', 0x94]);
        }
        out.extend(std::iter::repeat_n(b'a', n - 1));
        out.push(b'.');
        out
    }

    #[test]
    fn the_limit_is_exact_for_both_nesting_styles() {
        for build in [nested_lists, memo_nested_lists] {
            assert!(check(&build(MAX_DECODE_DEPTH)).is_ok());
            let err = check(&build(MAX_DECODE_DEPTH + 1)).unwrap_err();
            assert!(err.contains("deeper than"), "{err}");
            assert!(check(&build(100_000)).is_err());
        }
    }

    #[test]
    fn real_pickles_pass() {
        let value = vec![vec![("a".to_owned(), 1i64)], vec![]];
        let bytes = serde_pickle::to_vec(&value, serde_pickle::SerOptions::new()).unwrap();
        check(&bytes).unwrap();
        // Python 3: pickle.dumps({"k": [1, (2, 3)], "s": {4}}, protocol=4)
        let python = b"\x80\x04\x95\x1f\x00\x00\x00\x00\x00\x00\x00}\x94(\x8c\x01k\x94]\x94(K\x01K\x02K\x03\x86\x94e\x8c\x01s\x94\x8f\x94(K\x04\x90u.";
        check(python).unwrap();
    }

    #[test]
    fn self_containing_and_broken_pickles_are_refused() {
        // l = []; l.append(l)
        let recursive = b"\x80\x04]\x94h\x00a.";
        assert!(check(recursive).unwrap_err().contains("itself"));
        for bad in [&b""[..], b"\x80", b"a.", b"(t", b"h\x05.", b"\xff."] {
            assert!(check(bad).is_err(), "{bad:?}");
        }
    }
}
