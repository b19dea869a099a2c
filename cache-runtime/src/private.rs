//! Items used by the code the attribute macros generate. Not a public API:
//! names and signatures may change in any release.
pub use crate::memo::{check_storable, stored_clone};
pub use crate::memo::{
    Adapter, Args, CacheChoice, CacheHandle, CodecChoice, KeyBuf, KeyPart, Lookup, Memo, MemoSpec, Miss, Share,
    ShareByClone, ShareNone, ShareProbe, ThreadPin, ViaArgs, ViaKeyText,
};
pub use crate::ratelimit::{registry::MacroLimiter as RateLimitMacroLimiter, RateLimited};
