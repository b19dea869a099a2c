//! The byte pipeline between a codec and the store.
//!
//! After the codec has produced bytes, an engine runs them through its
//! [`Pipeline`]: an ordered list of reversible [`Transform`]s such as
//! compression, then encryption, then framing. Reading runs the same stages in
//! reverse. Every engine calls this one pipeline; none re-implements it.

use crate::error::Result;
use std::borrow::Cow;
use std::fmt::Debug;
use std::sync::Arc;

/// A reversible transformation of stored bytes (compression, encryption, a header).
pub trait Transform: Send + Sync + Debug {
    /// Turns plain bytes into stored bytes.
    fn seal(&self, plain: &[u8]) -> Result<Vec<u8>>;

    /// Turns stored bytes back into plain bytes, or fails with a typed error
    /// (`Crypto`, `Compression`, ...) when they are not what `seal` produced.
    fn open(&self, stored: &[u8]) -> Result<Vec<u8>>;

    /// [`Transform::open`] of bytes the caller no longer needs, so a stage
    /// may reuse their buffer (a cipher decodes and decrypts in place)
    /// instead of allocating another. The default borrows them.
    fn open_owned(&self, stored: Vec<u8>) -> Result<Vec<u8>> {
        self.open(&stored)
    }
}

/// An ordered list of transforms; empty by default (bytes stored as encoded).
#[derive(Debug, Clone, Default)]
pub struct Pipeline {
    stages: Vec<Arc<dyn Transform>>,
}

impl Pipeline {
    /// A pipeline that stores the codec's bytes unchanged.
    pub fn plain() -> Self {
        Self::default()
    }

    /// Appends a stage; stages seal in the order added and open in reverse.
    #[must_use]
    pub fn then(mut self, stage: Arc<dyn Transform>) -> Self {
        self.stages.push(stage);
        self
    }

    /// True when there are no stages.
    pub fn is_plain(&self) -> bool {
        self.stages.is_empty()
    }

    /// Runs every stage forward. Borrows when there is nothing to do.
    pub fn seal<'a>(&self, plain: &'a [u8]) -> Result<Cow<'a, [u8]>> {
        let mut data = Cow::Borrowed(plain);
        for stage in &self.stages {
            data = Cow::Owned(stage.seal(&data)?);
        }
        Ok(data)
    }

    /// Runs every stage backward.
    pub fn open(&self, stored: Vec<u8>) -> Result<Vec<u8>> {
        self.stages
            .iter()
            .rev()
            .try_fold(stored, |data, stage| stage.open_owned(data))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CacheError;

    #[derive(Debug)]
    struct Xor(u8);
    impl Transform for Xor {
        fn seal(&self, plain: &[u8]) -> Result<Vec<u8>> {
            Ok(plain.iter().map(|b| b ^ self.0).collect())
        }
        fn open(&self, stored: &[u8]) -> Result<Vec<u8>> {
            self.seal(stored)
        }
    }

    #[derive(Debug)]
    struct Tag;
    impl Transform for Tag {
        fn seal(&self, plain: &[u8]) -> Result<Vec<u8>> {
            Ok([b"T".as_slice(), plain].concat())
        }
        fn open(&self, stored: &[u8]) -> Result<Vec<u8>> {
            stored
                .strip_prefix(b"T")
                .map(<[u8]>::to_vec)
                .ok_or_else(|| CacheError::Crypto("missing tag".into()))
        }
    }

    #[test]
    fn stages_seal_in_order_and_open_in_reverse() {
        let pipeline = Pipeline::plain().then(Arc::new(Xor(1))).then(Arc::new(Tag));
        let sealed = pipeline.seal(b"ab").unwrap().into_owned();
        assert_eq!(sealed, b"T`c");
        assert_eq!(pipeline.open(sealed).unwrap(), b"ab");
        assert!(pipeline.open(b"xx".to_vec()).unwrap_err().is_corrupt_entry());
    }

    #[test]
    fn plain_pipeline_borrows() {
        assert!(matches!(Pipeline::plain().seal(b"x").unwrap(), Cow::Borrowed(_)));
    }
}
