// Every mistake is reported at once, each at its own token.
#[derive(Debug)]
struct ApiError;

impl From<memorix::ratelimit::RateLimited> for ApiError {
    fn from(_: memorix::ratelimit::RateLimited) -> Self {
        ApiError
    }
}

#[memorix::rate_limit(key = "{user}", rate = "100 per minute", algorithm = "fixed_window", burst = 5, ttl = 3)]
async fn search(user_id: u64, query: String) -> Result<String, ApiError> {
    Ok(format!("{user_id}{query}"))
}

fn main() {}
