//! Items used by the code the attribute macros generate. Not a public API:
//! names and signatures may change in any release.
pub use crate::memo::{Adapter, CacheChoice, CacheHandle, CodecChoice, KeyBuf, Lookup, Memo, MemoSpec, Miss};
pub use crate::ratelimit::{registry::MacroLimiter as RateLimitMacroLimiter, RateLimited};
