//! `redis://` URL parsing into a [`RedisConfig`].
//!
//! Errors name the field and the rule, never the text found: a mistyped URL
//! puts a password where a host, a path or an option value should be
//! (`redis://u:pa/ss@host` reads as host `u`, port `pa`, path `/ss@host`).

use super::config::{RedisConfig, TlsConfig};
use super::tls::TlsVersion;
use crate::duration::parse_duration;
use crate::error::{CacheError, Result};
use std::path::PathBuf;

pub(super) fn parse(input: &str) -> Result<RedisConfig> {
    let config = match parse_multi_host(input)? {
        Some(config) => config,
        None => parse_single_host(input)?,
    };
    config.validate()?;
    Ok(config)
}

/// `redis://`, `rediss://` and unix socket URLs, not yet validated.
fn parse_single_host(input: &str) -> Result<RedisConfig> {
    // The url crate's own error text may echo the input, password included.
    let url = url::Url::parse(input).map_err(|e| CacheError::config("url", format!("not a valid URL ({e})")))?;
    let mut config = RedisConfig::default();
    match url.scheme() {
        "redis" => {}
        "rediss" => config.tls = Some(TlsConfig::default()),
        "redis+unix" | "unix" => {
            config.unix_socket = Some(PathBuf::from(url.path()));
            if url.path().is_empty() {
                return Err(CacheError::config("url", "a unix socket URL needs a path"));
            }
        }
        _ => return Err(CacheError::config(
            "url",
            "unsupported scheme; expected redis://, rediss://, redis+unix://, redis+cluster:// or redis+sentinel://",
        )),
    }
    if config.unix_socket.is_none() {
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| CacheError::config("host", "missing in URL"))?;
        config.host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
        if let Some(port) = url.port() {
            config.port = port;
        }
        let db_path = url.path().trim_start_matches('/');
        if !db_path.is_empty() {
            config.db = db_path.parse().map_err(|_| bad_db_path(db_path))?;
        }
    }
    if !url.username().is_empty() {
        config.username = Some(decode(url.username(), "username")?);
    }
    if let Some(password) = url.password() {
        config.password = Some(decode(password, "password")?.into());
    }
    for (position, (name, value)) in url.query_pairs().enumerate() {
        apply_option(&mut config, position + 1, &name, &value)?;
    }
    Ok(config)
}

/// The URL path is not a database number. An `@` in it means the password
/// held a `/` that cut the authority short.
fn bad_db_path(path: &str) -> CacheError {
    let hint = match path.contains('@') {
        true => "; the path holds an `@`: percent-encode `/` in the password as %2F",
        false => "",
    };
    CacheError::config("db", format!("the URL path must be a database number (0-65535){hint}"))
}

/// `redis+cluster://` and `redis+sentinel://` URLs list several `host:port`
/// pairs, which the url crate cannot parse: the host list (and the sentinel
/// master name) are cut out, the rest is parsed as a plain `redis://` URL, and
/// the hosts are put back. `None` for any other scheme.
fn parse_multi_host(input: &str) -> Result<Option<RedisConfig>> {
    let Some((scheme, rest)) = input.split_once("://") else {
        return Ok(None);
    };
    let (tls, sentinel) = match scheme {
        "redis+cluster" => (false, false),
        "rediss+cluster" => (true, false),
        "redis+sentinel" => (false, true),
        "rediss+sentinel" => (true, true),
        _ => return Ok(None),
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let (userinfo, hosts) = match authority.rfind('@') {
        Some(at) => authority.split_at(at + 1),
        None => ("", authority),
    };
    let mut tail = tail.to_owned();
    let mut master = None;
    if sentinel {
        let path_end = tail.find(['?', '#']).unwrap_or(tail.len());
        let path = tail[..path_end].trim_start_matches('/');
        let (name, db) = path.split_once('/').unwrap_or((path, ""));
        if name.is_empty() {
            return Err(CacheError::config(
                "sentinel_master",
                "missing in URL; expected redis+sentinel://host:port,host:port/master_name[/db]",
            ));
        }
        master = Some(decode(name, "sentinel_master")?);
        tail = format!("/{db}{}", &tail[path_end..]);
    }
    let plain = format!("redis{}://{userinfo}placeholder{tail}", if tls { "s" } else { "" });
    let mut config = parse_single_host(&plain)?;
    let defaults = RedisConfig::default();
    config.host = defaults.host;
    config.port = defaults.port;
    if sentinel {
        config.sentinel_master = master;
        config.sentinel_nodes = parse_hosts("sentinel_nodes", hosts, 26379)?;
    } else {
        config.cluster_nodes = parse_hosts("cluster_nodes", hosts, 6379)?;
    }
    Ok(Some(config))
}

/// `host[:port],[v6::addr][:port],...`. Errors name the entry by position, not
/// by text: a mistyped URL may have put a password where a host should be.
fn parse_hosts(field: &'static str, list: &str, default_port: u16) -> Result<Vec<(String, u16)>> {
    if list.is_empty() {
        return Err(CacheError::config(field, "no host in the URL"));
    }
    list.split(',')
        .enumerate()
        .map(|(i, entry)| {
            let n = i + 1;
            let bad = |what: &str| CacheError::config(field, format!("host {n} in the URL {what}"));
            let (host, port) = match entry.strip_prefix('[') {
                Some(v6) => {
                    let (host, after) = v6.split_once(']').ok_or_else(|| bad("has an unclosed `[`"))?;
                    match after {
                        "" => (host, None),
                        _ => (
                            host,
                            Some(after.strip_prefix(':').ok_or_else(|| bad("has text after `]`"))?),
                        ),
                    }
                }
                None => match entry.split_once(':') {
                    Some((host, port)) => (host, Some(port)),
                    None => (entry, None),
                },
            };
            if host.is_empty() {
                return Err(bad("is empty"));
            }
            let port = match port {
                None => default_port,
                Some(port) => port
                    .parse()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| bad("has an invalid port"))?,
            };
            Ok((host.to_owned(), port))
        })
        .collect()
}

fn decode(part: &str, field: &'static str) -> Result<String> {
    percent_decode(part).ok_or_else(|| CacheError::config(field, "is not valid percent-encoded UTF-8"))
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Applies query option number `position` (1-based, named in errors instead
/// of the option's text).
fn apply_option(config: &mut RedisConfig, position: usize, name: &str, value: &str) -> Result<()> {
    let flag = |field: &'static str| match value {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(CacheError::config(field, "must be true or false (also 1/0, yes/no)")),
    };
    let duration = |field: &'static str| {
        parse_duration(field, value)
            .map_err(|_| CacheError::config(field, "must be a duration such as `250ms`, `30s`, `5m` or `1h30m`"))
    };
    match name {
        "db" => {
            config.db = value
                .parse()
                .map_err(|_| CacheError::config("db", "must be a database number (0-65535)"))?
        }
        "connect_timeout" => config.connect_timeout = duration("connect_timeout")?,
        "response_timeout" => config.response_timeout = duration("response_timeout")?,
        "keepalive" => config.keepalive = Some(duration("keepalive")?),
        "health_check_interval" => config.health_check_interval = Some(duration("health_check_interval")?),
        "max_connections" => {
            config.max_connections = value
                .parse()
                .map_err(|_| CacheError::config("max_connections", "must be a number between 1 and 1024"))?
        }
        "retry_on_timeout" => config.retry_on_timeout = flag("retry_on_timeout")?,
        // Unverified TLS is not offered: redis-rs cannot skip only the host
        // name check, and skipping every check gives a man in the middle the
        // password. `false` is what happens anyway.
        "insecure" => {
            if flag("insecure")? {
                return Err(CacheError::config(
                    "insecure",
                    "is not supported: certificates are always verified; to trust a self-signed server, \
                     give its CA (TlsConfig::ca_cert)",
                ));
            }
        }
        "min_tls_version" => match config.tls.as_mut() {
            Some(tls) => tls.min_version = TlsVersion::parse(value)?,
            None => return Err(CacheError::config("min_tls_version", "only applies to rediss:// URLs")),
        },
        "sentinel_password" => config.sentinel_password = Some(value.into()),
        "protocol" | "lib_name" => {}
        _ => {
            return Err(CacheError::config(
                "url",
                format!("option {position} of the query is unknown; expected one of: db, connect_timeout, response_timeout, keepalive, health_check_interval, max_connections, retry_on_timeout, min_tls_version, sentinel_password"),
            ))
        }
    }
    Ok(())
}
