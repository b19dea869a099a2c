//! A tower [`Layer`](tower_layer::Layer) that rate-limits HTTP requests
//! (axum, hyper, tonic, anything on `http` 1.x).

use super::decision::ceil_secs;
use super::{Decision, RateLimiter};
use futures_util::future::BoxFuture;
use http::header::{HeaderName, HeaderValue, RETRY_AFTER};
use http::{Request, Response, StatusCode};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::task::{Context, Poll};
use tower_service::Service;

/// `RateLimit-Limit`: the limit of the subject.
pub const RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
/// `RateLimit-Remaining`: requests the subject may still make now.
pub const RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
/// `RateLimit-Reset`: seconds until the subject is back to its full limit.
pub const RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");

/// The subject of a request when the extractor finds none: every such request
/// shares this one allowance (rather than escaping the limit).
pub const ANONYMOUS_SUBJECT: &str = "-";

type KeyFn = dyn Fn(&http::request::Parts) -> Option<String> + Send + Sync;

/// How the layer names the subject of a request.
///
/// A request where no subject is found counts against the shared subject
/// [`ANONYMOUS_SUBJECT`].
#[derive(Clone)]
pub struct KeyExtractor(Arc<KeyFn>);

impl fmt::Debug for KeyExtractor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyExtractor")
    }
}

impl KeyExtractor {
    /// The value of a request header, e.g. `x-api-key`.
    pub fn header(name: impl AsRef<str>) -> Self {
        let name = name.as_ref().to_ascii_lowercase();
        KeyExtractor(Arc::new(move |parts: &http::request::Parts| {
            parts
                .headers
                .get(name.as_str())
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        }))
    }

    /// The peer's IP address, from a [`SocketAddr`] or [`IpAddr`] request
    /// extension (hyper servers and tests insert one).
    ///
    /// axum keeps the peer as `ConnectInfo<SocketAddr>`, a type this crate does
    /// not know: use [`KeyExtractor::from_fn`] there, as
    /// `examples/axum_rate_limit.rs` shows. Forwarding headers
    /// (`X-Forwarded-For`) are not read: behind a proxy you trust, read them in
    /// a closure.
    pub fn client_ip() -> Self {
        KeyExtractor(Arc::new(|parts: &http::request::Parts| {
            let ip = parts
                .extensions
                .get::<SocketAddr>()
                .map(SocketAddr::ip)
                .or_else(|| parts.extensions.get::<IpAddr>().copied());
            ip.map(|ip| ip.to_string())
        }))
    }

    /// Any closure over the request head (method, URI, headers, extensions).
    pub fn from_fn<F>(f: F) -> Self
    where
        F: Fn(&http::request::Parts) -> Option<String> + Send + Sync + 'static,
    {
        KeyExtractor(Arc::new(f))
    }

    fn subject(&self, parts: &http::request::Parts) -> String {
        (self.0)(parts).unwrap_or_else(|| ANONYMOUS_SUBJECT.to_owned())
    }
}

/// Rate-limits every request through a [`RateLimiter`].
///
/// Allowed requests reach the inner service and their responses carry
/// `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset`. Denied
/// requests get `429 Too Many Requests` with the same headers plus
/// `Retry-After` (seconds, rounded up), and never reach the inner service. If
/// the limiter returns an error (Redis unreachable with `OnUnavailable::Error`),
/// the answer is `503 Service Unavailable` with `Retry-After: 1`.
///
/// ```no_run
/// use memorix_runtime::ratelimit::{KeyExtractor, Rate, RateLimitLayer, RateLimiter};
///
/// # fn demo() -> memorix_runtime::Result<()> {
/// let limiter = RateLimiter::builder(Rate::parse("100/m")?).build()?;
/// let layer = RateLimitLayer::new(limiter, KeyExtractor::header("x-api-key"));
/// // axum: Router::new().route(...).layer(layer)
/// # let _ = layer; Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct RateLimitLayer {
    limiter: RateLimiter,
    key: KeyExtractor,
}

impl RateLimitLayer {
    /// Limits with `limiter`, naming subjects with `key`.
    pub fn new(limiter: RateLimiter, key: KeyExtractor) -> Self {
        RateLimitLayer { limiter, key }
    }
}

impl<S> tower_layer::Layer<S> for RateLimitLayer {
    type Service = RateLimitService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimitService {
            inner,
            limiter: self.limiter.clone(),
            key: self.key.clone(),
        }
    }
}

/// The service [`RateLimitLayer`] wraps around an inner service.
#[derive(Debug, Clone)]
pub struct RateLimitService<S> {
    inner: S,
    limiter: RateLimiter,
    key: KeyExtractor,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RateLimitService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        // The clone is not ready; keep the ready one for this call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let limiter = self.limiter.clone();
        let (parts, body) = request.into_parts();
        let subject = self.key.subject(&parts);
        let request = Request::from_parts(parts, body);
        Box::pin(async move {
            match limiter.check(&subject).await {
                Ok(decision) if decision.allowed => {
                    let mut response = inner.call(request).await?;
                    set_headers(response.headers_mut(), &decision);
                    Ok(response)
                }
                Ok(decision) => {
                    let mut response = Response::new(ResBody::default());
                    *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
                    set_headers(response.headers_mut(), &decision);
                    response
                        .headers_mut()
                        .insert(RETRY_AFTER, HeaderValue::from(ceil_secs(decision.retry_after).max(1)));
                    Ok(response)
                }
                Err(err) => {
                    tracing::warn!(error = %err, "rate limit layer: limiter failed; answering 503");
                    let mut response = Response::new(ResBody::default());
                    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                    response.headers_mut().insert(RETRY_AFTER, HeaderValue::from(1u64));
                    Ok(response)
                }
            }
        })
    }
}

fn set_headers(headers: &mut http::HeaderMap, decision: &Decision) {
    headers.insert(RATELIMIT_LIMIT, HeaderValue::from(decision.limit));
    headers.insert(RATELIMIT_REMAINING, HeaderValue::from(decision.remaining));
    headers.insert(RATELIMIT_RESET, HeaderValue::from(ceil_secs(decision.reset_after)));
}
