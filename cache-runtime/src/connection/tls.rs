//! The TLS version floor, and the version a server actually negotiates.
//!
//! redis-rs builds a fresh rustls configuration for every connection it opens
//! (standalone, pub/sub, every cluster node, sentinels and the primary they
//! name, every reconnection) from the process's default rustls
//! `CryptoProvider`, with no way to pass protocol versions. So the floor is
//! enforced where every one of those configurations comes from: the provider
//! memorix installs offers TLS 1.2 cipher suites only when the floor allows
//! TLS 1.2. Without them rustls cannot negotiate TLS 1.2 at all.
//!
//! That makes the floor a property of the process. The first TLS connection
//! installs the provider for its floor; a later connection asking for TLS 1.3
//! while TLS 1.2 is already allowed is refused with a `Config` error rather
//! than connected below its floor. A process that mixes floors calls
//! [`install_tls_floor`] with the highest one at start-up.

use crate::error::{CacheError, Result};
use rustls::crypto::CryptoProvider;
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

/// Lowest TLS version a connection accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Hash, Serialize)]
#[non_exhaustive]
pub enum TlsVersion {
    /// TLS 1.2 or 1.3 (rustls never negotiates anything older).
    #[default]
    #[serde(rename = "1.2")]
    V1_2,
    /// TLS 1.3 only.
    #[serde(rename = "1.3")]
    V1_3,
}

impl TlsVersion {
    /// Parses `1.2` / `1.3` (also `TLSv1.2`, `tls1.3`).
    pub fn parse(text: &str) -> Result<Self> {
        let t = text.trim().to_ascii_lowercase();
        let t = t.trim_start_matches("tlsv").trim_start_matches("tls");
        match t {
            "1.2" => Ok(TlsVersion::V1_2),
            "1.3" => Ok(TlsVersion::V1_3),
            _ => Err(CacheError::config("min_tls_version", "must be 1.2 or 1.3")),
        }
    }
}

/// Makes `floor` the lowest TLS version of every connection in this process.
///
/// Call it at start-up, before any TLS connection, when caches in one
/// process ask for different floors (the first TLS connection otherwise sets
/// the floor, see [`TlsConfig::min_version`](crate::TlsConfig::min_version)).
/// Installs ring's rustls provider restricted to `floor`; fails with a
/// `Config` error if a provider that allows a lower version is already in
/// place (installed by the application or by an earlier connection).
///
/// ```
/// use memorix_runtime::{install_tls_floor, TlsVersion};
///
/// install_tls_floor(TlsVersion::V1_3)?;
/// // From now on no connection of this process negotiates TLS 1.2.
/// install_tls_floor(TlsVersion::V1_2)?; // a lower floor is already met
/// # Ok::<_, memorix_runtime::CacheError>(())
/// ```
///
/// Too late, once TLS 1.2 is allowed:
///
/// ```
/// use memorix_runtime::{install_tls_floor, TlsVersion};
///
/// install_tls_floor(TlsVersion::V1_2)?;
/// let err = install_tls_floor(TlsVersion::V1_3).unwrap_err();
/// assert!(err.is_config() && err.to_string().contains("cannot be enforced"));
/// # Ok::<_, memorix_runtime::CacheError>(())
/// ```
pub fn install_tls_floor(floor: TlsVersion) -> Result<()> {
    if CryptoProvider::get_default().is_none() {
        // Losing a race with another thread is fine: the check below judges
        // whichever provider won.
        let _ = provider_for(floor).install_default();
    }
    let installed = CryptoProvider::get_default()
        .ok_or_else(|| CacheError::config("tls.min_version", "no rustls crypto provider could be installed"))?;
    if floor == TlsVersion::V1_3 && allows_tls12(installed) {
        return Err(CacheError::config(
            "tls.min_version",
            "TLS 1.3 cannot be enforced: this process's rustls provider already allows TLS 1.2 \
             (installed by the application or by an earlier connection with a 1.2 floor); \
             call memorix::install_tls_floor(TlsVersion::V1_3) at start-up",
        ));
    }
    Ok(())
}

/// The lowest version the process's provider lets rustls negotiate, if one
/// is installed.
pub(crate) fn process_floor() -> Option<TlsVersion> {
    CryptoProvider::get_default().map(|p| match allows_tls12(p) {
        true => TlsVersion::V1_2,
        false => TlsVersion::V1_3,
    })
}

fn allows_tls12(provider: &CryptoProvider) -> bool {
    provider
        .cipher_suites
        .iter()
        .any(|suite| suite.version().version == rustls::ProtocolVersion::TLSv1_2)
}

/// ring's provider, without the TLS 1.2 cipher suites when the floor is 1.3.
fn provider_for(floor: TlsVersion) -> CryptoProvider {
    let mut provider = rustls::crypto::ring::default_provider();
    if floor == TlsVersion::V1_3 {
        provider
            .cipher_suites
            .retain(|suite| suite.version().version != rustls::ProtocolVersion::TLSv1_2);
    }
    provider
}

/// Opens a TLS connection to `host:port` the way redis-rs does (the same
/// provider, CA and client certificate, full verification), completes the
/// handshake, and returns the version it negotiated (`"TLSv1.3"`).
pub(crate) async fn negotiated_version(
    host: &str,
    port: u16,
    tls: &super::TlsConfig,
    timeout: Duration,
) -> Result<String> {
    install_tls_floor(tls.min_version)?;
    let config = Arc::new(client_config(tls)?);
    let server_name = rustls::pki_types::ServerName::try_from(host.to_owned())
        .map_err(|_| CacheError::config("host", "is not a valid TLS server name"))?;
    let handshake = async {
        let tcp = tokio::net::TcpStream::connect((host, port)).await?;
        tokio_rustls::TlsConnector::from(config).connect(server_name, tcp).await
    };
    let stream = tokio::time::timeout(timeout, handshake)
        .await
        .map_err(|_| CacheError::Timeout)?
        .map_err(|e| CacheError::Connection(Box::new(e)))?;
    let version = stream.get_ref().1.protocol_version();
    Ok(match version {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3".to_owned(),
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2".to_owned(),
        other => format!("{other:?}"),
    })
}

/// A rustls client configuration like the one redis-rs builds for `tls`.
fn client_config(tls: &super::TlsConfig) -> Result<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |field: &'static str| CacheError::config(field, "is not a readable PEM file");
    let mut roots = rustls::RootCertStore::empty();
    match &tls.ca_cert {
        Some(path) => {
            for cert in CertificateDer::pem_file_iter(path).map_err(|_| bad("tls.ca_cert"))? {
                roots
                    .add(cert.map_err(|_| bad("tls.ca_cert"))?)
                    .map_err(|_| bad("tls.ca_cert"))?;
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
        }
    }
    let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
    match (&tls.client_cert, &tls.client_key) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .map_err(|_| bad("tls.client_cert"))?
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|_| bad("tls.client_cert"))?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|_| bad("tls.client_key"))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|_| CacheError::config("tls.client_cert", "does not match its key"))
        }
        _ => Ok(builder.with_no_client_auth()),
    }
}
