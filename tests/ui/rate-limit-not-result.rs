// `#[rate_limit]` returns `Err(RateLimited)` when the limit is reached, so the
// function must return a `Result`.
#[memorix::rate_limit(key = "{id}", rate = "10/s")]
async fn lookup(id: u32) -> u32 {
    id
}

fn main() {}
