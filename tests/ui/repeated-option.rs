use memorix::cached;

#[cached(ttl = 1, ttl = 2, key = "a:{id}", key = "b:{id}", lock = "global")]
async fn load(id: u32) -> u32 {
    id
}

async fn callers() -> memorix::Result<()> {
    // The companions are still emitted: no cascade of missing names.
    let _ = load(1).await;
    let _ = load_invalidate(1).await?;
    load_prime(1, 2).await?;
    let _ = load_no_cache(1).await;
    let _ = load_cache_key(1);
    Ok(())
}

fn main() {
    let _ = callers();
}
