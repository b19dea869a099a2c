// `#[rate_limit]` keys use the `#[cached]` template syntax: paths such as
// `{user.id}` work, `format!` specs do not.
#[derive(Debug)]
struct ApiError;

impl From<memorix::ratelimit::RateLimited> for ApiError {
    fn from(_: memorix::ratelimit::RateLimited) -> Self {
        ApiError
    }
}

struct User {
    id: u64,
}

#[memorix::rate_limit(key = "{user.id}:{query:?}", rate = "10/s")]
async fn search(user: User, query: String) -> Result<String, ApiError> {
    Ok(format!("{}{query}", user.id))
}

fn main() {}
