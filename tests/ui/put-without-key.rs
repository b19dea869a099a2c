use memorix::{cache_evict, cache_put};

#[cache_put(ttl = 60)]
fn save(id: u32) -> u32 {
    id
}

#[cache_evict(before_invocation, cache_err)]
fn remove(id: u32) {
    let _ = id;
}

fn main() {}
