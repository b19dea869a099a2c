//! Security settings of the two-tier cache and their assessment.
//!
//! [`SecurityConfig`] carries the credentials and TLS settings; it is applied
//! over the Redis settings when the cache connects. The assessment
//! ([`SecurityStatus`], [`SecurityValidation`], the report) scores what is
//! actually in place out of 100, so a properly secured deployment (ACL user
//! with a password, TLS with verification, a server that refuses anonymous
//! clients, Redis 6+) scores 100 and passes. Passwords never appear in Debug,
//! Display, logs or reports.

use crate::connection::{self, RedisConfig, Secret, TlsConfig};
use crate::error::Result;
use serde::Serialize;
use std::fmt::{self, Write as _};
use std::time::Duration;

/// Score at or above which a setup counts as secure (with no critical finding).
pub const SECURE_SCORE: u8 = 80;

pub use crate::connection::TlsVersion;

/// Credentials and TLS settings, applied over the Redis settings.
///
/// ```
/// use memorix_runtime::{SecurityConfig, TlsConfig, TlsVersion};
///
/// let security = SecurityConfig::new()
///     .username("cache")
///     .password("s3cret")
///     .tls(TlsConfig::new().ca_cert("/etc/redis/ca.pem"))
///     .min_tls_version(TlsVersion::V1_2);
/// assert!(!format!("{security:?}").contains("s3cret"));
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
#[must_use]
pub struct SecurityConfig {
    username: Option<String>,
    password: Option<Secret>,
    tls: Option<TlsConfig>,
    min_tls_version: TlsVersion,
}

impl fmt::Debug for SecurityConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecurityConfig")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("tls", &self.tls)
            .field("min_tls_version", &self.min_tls_version)
            .finish()
    }
}

impl SecurityConfig {
    /// No credentials, no TLS.
    pub fn new() -> Self {
        Self::default()
    }

    /// ACL user name (Redis 6+).
    pub fn username(mut self, username: impl Into<String>) -> Self {
        self.username = Some(username.into());
        self
    }

    /// Password of the ACL user, or the server's `requirepass`.
    pub fn password(mut self, password: impl Into<Secret>) -> Self {
        self.password = Some(password.into());
        self
    }

    /// TLS with CA / client certificate / key paths; certificates are always
    /// verified.
    pub fn tls(mut self, tls: TlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Lowest TLS version to accept (default 1.2), on the [`TlsConfig`] given
    /// here or the one a `rediss://` URL made. rustls enforces it for the
    /// whole process (see [`TlsConfig::min_version`]); the validation reports
    /// the version the server negotiated.
    pub fn min_tls_version(mut self, version: TlsVersion) -> Self {
        self.min_tls_version = version;
        self
    }

    /// The configured minimum TLS version.
    pub fn tls_version_floor(&self) -> TlsVersion {
        self.min_tls_version
    }

    pub(crate) fn apply(&self, redis: RedisConfig) -> Result<RedisConfig> {
        let tls = self.tls.clone().or_else(|| redis.tls().cloned());
        let mut builder = redis.into_builder();
        if let Some(user) = &self.username {
            builder = builder.username(user.clone());
        }
        if let Some(password) = &self.password {
            builder = builder.password(password.clone());
        }
        if let Some(tls) = tls {
            let floor = self.min_tls_version.max(tls.min_version);
            builder = builder.tls(tls.min_version(floor));
        }
        builder.build()
    }
}

/// What the configuration says about security, without asking the server.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct SecurityStatus {
    /// A password is configured.
    pub auth_configured: bool,
    /// The ACL user name, if any (`None` means the `default` user).
    pub acl_username: Option<String>,
    /// The connection uses TLS (or a unix socket, which never leaves the host).
    pub tls_enabled: bool,
    /// TLS certificates and host names are verified.
    pub certificate_verification: bool,
    /// A client certificate is presented (mutual TLS).
    pub client_certificate: bool,
    /// Lowest TLS version configured.
    pub min_tls_version: TlsVersion,
    /// `high`, `medium` or `low`, from the score.
    pub security_level: &'static str,
    /// Score out of 100 (the last validation's, if one ran).
    pub score: u8,
    /// The last [`SecurityValidation`], if one ran.
    pub last_validation: Option<SecurityValidation>,
}

/// The outcome of checking the live connection.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct SecurityValidation {
    /// Score at least [`SECURE_SCORE`] and no critical finding.
    pub is_secure: bool,
    /// Score out of 100.
    pub score: u8,
    /// The server was reached with the configured credentials.
    pub connected: bool,
    /// `ACL WHOAMI`: the user the server sees.
    pub authenticated_as: Option<String>,
    /// The connection uses TLS (or a unix socket).
    pub tls: bool,
    /// `redis_version` from `INFO server`.
    pub server_version: Option<String>,
    /// The TLS version the server negotiated (`TLSv1.3`), when TLS is on.
    pub tls_version: Option<String>,
    /// The server refused a client without credentials (`None` if untested).
    pub anonymous_access_refused: Option<bool>,
    /// Findings that make the setup insecure.
    pub vulnerabilities: Vec<String>,
    /// What to improve.
    pub recommendations: Vec<String>,
}

/// What the cache touches on the server, for the suggested ACL user: its keys
/// (a `SCAN`-style glob of the prefix) and its invalidation channel.
#[derive(Debug, Clone)]
pub(crate) struct Scope {
    pub(crate) key_pattern: String,
    pub(crate) channel: String,
}

impl Scope {
    /// `ACL SETUSER` for a user that can do all the two-tier cache does and no
    /// more: its keys (`~`), its invalidation channel (`&`: Redis 7 grants no
    /// channel by default), reads, writes, `SCAN`/`UNLINK`, pub/sub, `PING`,
    /// `EVAL` (the one-key compare-and-set of removals and replays),
    /// and `INFO` / `ACL WHOAMI` for [`validate`]. The password is a placeholder.
    pub(crate) fn acl_setuser(&self, user: Option<&str>) -> String {
        let user = user.filter(|u| *u != "default").unwrap_or("cache");
        let channel = glob_literal(&self.channel);
        format!(
            "ACL SETUSER {user} on >PASSWORD resetkeys ~{} resetchannels &{channel} -@all +@read +@write +@keyspace \
             +@pubsub +@connection -@dangerous +eval +evalsha +info +acl|whoami",
            self.key_pattern
        )
    }
}

impl super::Inner {
    /// The keys and channel this cache uses, for the suggested ACL user.
    pub(super) fn security_scope(&self) -> Scope {
        Scope {
            key_pattern: self.prefix.scan_pattern(),
            channel: self.channel.clone(),
        }
    }
}

/// `text` as a Redis glob that matches only itself.
fn glob_literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

struct Facts {
    auth: bool,
    acl_user: bool,
    tls: bool,
    verified: bool,
    anonymous_refused: Option<bool>,
    modern_server: Option<bool>,
}

/// Scores facts out of 100: auth 25, ACL user 15, TLS 25, verification 15,
/// anonymous refused 10, Redis 6+ 10. Unchecked live facts score nothing.
fn score(f: &Facts) -> u8 {
    let mut s = 0;
    s += if f.auth { 25 } else { 0 };
    s += if f.acl_user { 15 } else { 0 };
    s += if f.tls { 25 } else { 0 };
    s += if f.tls && f.verified { 15 } else { 0 };
    s += if f.anonymous_refused == Some(true) { 10 } else { 0 };
    s += if f.modern_server == Some(true) { 10 } else { 0 };
    s
}

fn level(score: u8) -> &'static str {
    match score {
        80.. => "high",
        50.. => "medium",
        _ => "low",
    }
}

fn config_facts(config: &RedisConfig) -> Facts {
    let unix = config.unix_socket().is_some();
    Facts {
        auth: config.password().is_some(),
        acl_user: config.username().is_some_and(|u| u != "default"),
        tls: config.tls().is_some() || unix,
        verified: unix || config.tls().is_some(),
        anonymous_refused: None,
        modern_server: None,
    }
}

fn advice(f: &Facts, min_tls: TlsVersion, acl: &str) -> (Vec<String>, Vec<String>) {
    let mut vulns = Vec::new();
    let mut recs = Vec::new();
    if !f.auth {
        vulns.push("no password: anyone who reaches the port can read and write the cache".to_owned());
        recs.push("set a password (SecurityConfig::password) and `requirepass` or an ACL user on the server".into());
    }
    if !f.acl_user {
        recs.push(format!(
            "use a dedicated ACL user limited to the cache's keys and channel (`{acl}`)"
        ));
    }
    if !f.tls {
        vulns.push("no TLS: values and the password cross the network in clear".to_owned());
        recs.push("enable TLS (rediss://) so values and credentials are encrypted in transit".into());
    } else if min_tls == TlsVersion::V1_2 {
        recs.push("consider `tls-protocols \"TLSv1.3\"` on the server to refuse TLS 1.2".into());
    }
    if f.anonymous_refused == Some(false) {
        vulns.push("the server accepts clients without credentials".to_owned());
        recs.push("disable the passwordless `default` user (`ACL SETUSER default off`) or set `requirepass`".into());
    }
    if f.modern_server == Some(false) {
        recs.push("upgrade to Redis 6 or newer for ACL users and TLS".into());
    }
    (vulns, recs)
}

pub(crate) fn status(config: &RedisConfig, min_tls: TlsVersion, last: Option<SecurityValidation>) -> SecurityStatus {
    let facts = config_facts(config);
    let score = last.as_ref().map_or_else(|| score(&facts), |v| v.score);
    SecurityStatus {
        auth_configured: facts.auth,
        acl_username: config.username().map(str::to_owned),
        tls_enabled: facts.tls,
        certificate_verification: facts.verified,
        client_certificate: config.tls().is_some_and(|t| t.client_cert.is_some()),
        min_tls_version: min_tls,
        security_level: level(score),
        score,
        last_validation: last,
    }
}

pub(crate) fn recommendations(
    config: &RedisConfig,
    min_tls: TlsVersion,
    last: Option<&SecurityValidation>,
    scope: &Scope,
) -> Vec<String> {
    match last {
        Some(v) => v.recommendations.clone(),
        None => advice(&config_facts(config), min_tls, &scope.acl_setuser(config.username())).1,
    }
}

/// A connection as `config` makes it, and the TLS address it went to.
async fn connect(config: &RedisConfig) -> Result<(redis::aio::MultiplexedConnection, Option<(String, u16)>)> {
    let client = connection::pubsub_client(config).await?;
    let settings = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(config.connect_timeout()))
        .set_response_timeout(Some(config.response_timeout()));
    let tls_addr = match client.get_connection_info().addr() {
        redis::ConnectionAddr::TcpTls { host, port, .. } => Some((host.clone(), *port)),
        _ => None,
    };
    Ok((
        client.get_multiplexed_async_connection_with_config(&settings).await?,
        tls_addr,
    ))
}

/// The version a TLS server negotiates with this process's settings.
async fn probe_tls(config: &RedisConfig, addr: Option<(String, u16)>) -> Result<Option<String>> {
    match (config.tls(), addr) {
        (Some(tls), Some((host, port))) => connection::negotiated_version(&host, port, tls, config.connect_timeout())
            .await
            .map(Some),
        _ => Ok(None),
    }
}

/// Connects with `config` and checks auth, TLS, the ACL user, anonymous access
/// and the server version.
pub(crate) async fn validate(config: &RedisConfig, min_tls: TlsVersion, scope: &Scope) -> SecurityValidation {
    let mut facts = config_facts(config);
    let mut authenticated_as = None;
    let mut server_version = None;
    let mut connected = false;
    let mut tls_version = None;
    let mut extra_vulns = Vec::new();
    match connect(config).await {
        Ok((mut conn, tls_addr)) => {
            connected = true;
            match probe_tls(config, tls_addr).await {
                Ok(version) => tls_version = version,
                Err(err) => extra_vulns.push(format!("the TLS version check failed: {err}")),
            }
            authenticated_as = redis::cmd("ACL")
                .arg("WHOAMI")
                .query_async::<String>(&mut conn)
                .await
                .ok();
            if let Ok(info) = redis::cmd("INFO").arg("server").query_async::<String>(&mut conn).await {
                server_version = info
                    .lines()
                    .find_map(|l| l.strip_prefix("redis_version:"))
                    .map(|v| v.trim().to_owned());
            }
            facts.modern_server = server_version
                .as_deref()
                .and_then(|v| v.split('.').next()?.parse::<u32>().ok())
                .map(|major| major >= 6);
            if let Some(user) = &authenticated_as {
                facts.acl_user = user != "default";
            }
        }
        Err(err) => extra_vulns.push(format!("could not connect with the configured credentials: {err}")),
    }
    if connected {
        let mut anonymous = config.clone();
        anonymous.username = None;
        anonymous.password = None;
        let refused = match tokio::time::timeout(Duration::from_secs(2), connect(&anonymous)).await {
            Ok(Ok((mut conn, _))) => redis::cmd("GET")
                .arg("memorix:security-probe")
                .query_async::<Option<Vec<u8>>>(&mut conn)
                .await
                .is_err(),
            Ok(Err(_)) => true,
            Err(_) => true,
        };
        facts.anonymous_refused = Some(refused);
    }
    let (mut vulns, recs) = advice(&facts, min_tls, &scope.acl_setuser(config.username()));
    vulns.extend(extra_vulns);
    let score = if connected { score(&facts) } else { 0 };
    let critical = !facts.auth || (facts.tls && !facts.verified) || facts.anonymous_refused == Some(false);
    SecurityValidation {
        is_secure: connected && score >= SECURE_SCORE && !critical,
        score,
        connected,
        authenticated_as,
        tls: facts.tls,
        server_version,
        tls_version,
        anonymous_access_refused: facts.anonymous_refused,
        vulnerabilities: vulns,
        recommendations: recs,
    }
}

/// A readable report of `status`.
pub(crate) fn report(config: &RedisConfig, status: &SecurityStatus, scope: &Scope) -> String {
    let yes = |b: bool| if b { "yes" } else { "NO" };
    let mut out = String::new();
    let _ = writeln!(out, "memorix security report");
    let _ = writeln!(out, "=======================");
    let _ = writeln!(out, "server:                   {config}");
    let _ = writeln!(
        out,
        "score:                    {}/100 ({})",
        status.score, status.security_level
    );
    let _ = writeln!(out, "password configured:      {}", yes(status.auth_configured));
    let _ = writeln!(
        out,
        "ACL user:                 {}",
        status.acl_username.as_deref().unwrap_or("default")
    );
    let _ = writeln!(out, "TLS:                      {}", yes(status.tls_enabled));
    let _ = writeln!(
        out,
        "certificate verification: {}",
        yes(status.certificate_verification)
    );
    let _ = writeln!(out, "client certificate:       {}", yes(status.client_certificate));
    let floor = |v: TlsVersion| if v == TlsVersion::V1_3 { "1.3" } else { "1.2" };
    let _ = match connection::process_floor() {
        Some(process) if process > status.min_tls_version => writeln!(
            out,
            "minimum TLS version:      {} (this process enforces {})",
            floor(status.min_tls_version),
            floor(process)
        ),
        _ => writeln!(out, "minimum TLS version:      {}", floor(status.min_tls_version)),
    };
    match &status.last_validation {
        Some(v) => {
            let _ = writeln!(out, "validated against server: yes");
            let _ = writeln!(
                out,
                "  verdict:                {}",
                if v.is_secure { "SECURE" } else { "NOT SECURE" }
            );
            let _ = writeln!(
                out,
                "  authenticated as:       {}",
                v.authenticated_as.as_deref().unwrap_or("?")
            );
            let _ = writeln!(
                out,
                "  server version:         {}",
                v.server_version.as_deref().unwrap_or("?")
            );
            if let Some(version) = &v.tls_version {
                let _ = writeln!(out, "  negotiated TLS version: {version}");
            }
            let refused = match v.anonymous_access_refused {
                Some(true) => "yes",
                Some(false) => "NO",
                None => "untested",
            };
            let _ = writeln!(out, "  anonymous refused:      {refused}");
            if !v.vulnerabilities.is_empty() {
                let _ = writeln!(out, "vulnerabilities:");
                for item in &v.vulnerabilities {
                    let _ = writeln!(out, "  - {item}");
                }
            }
        }
        None => {
            let _ = writeln!(out, "validated against server: no (call validate_security())");
        }
    }
    let recs = match &status.last_validation {
        Some(v) => v.recommendations.clone(),
        None => {
            advice(
                &config_facts(config),
                status.min_tls_version,
                &scope.acl_setuser(config.username()),
            )
            .1
        }
    };
    if !recs.is_empty() {
        let _ = writeln!(out, "recommendations:");
        for item in recs {
            let _ = writeln!(out, "  - {item}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fully_secured_setup_scores_full_marks() {
        let facts = Facts {
            auth: true,
            acl_user: true,
            tls: true,
            verified: true,
            anonymous_refused: Some(true),
            modern_server: Some(true),
        };
        assert_eq!(score(&facts), 100);
        let (vulns, _) = advice(&facts, TlsVersion::V1_3, "");
        assert!(vulns.is_empty());
        let open = Facts {
            auth: false,
            acl_user: false,
            tls: false,
            verified: false,
            anonymous_refused: Some(false),
            modern_server: Some(true),
        };
        assert!(score(&open) < SECURE_SCORE);
        assert_eq!(
            advice(&open, TlsVersion::V1_2, "").0.len(),
            3,
            "no password, no TLS, anonymous access"
        );
    }

    #[test]
    fn tls_versions_parse() {
        assert_eq!(TlsVersion::parse("TLSv1.3").unwrap(), TlsVersion::V1_3);
        assert_eq!(TlsVersion::parse("1.2").unwrap(), TlsVersion::V1_2);
        assert!(TlsVersion::parse("1.1")
            .unwrap_err()
            .to_string()
            .contains("min_tls_version"));
    }
}
