//! Certificates for TLS tests, made at run time with rcgen: a CA, a server
//! certificate for 127.0.0.1 / localhost, a client certificate, and an
//! unrelated CA to prove verification fails against it.

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, SanType,
};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

/// PEM files in a temporary folder: `ca.pem`, `server.pem` / `server.key`,
/// `client.pem` / `client.key`, `other-ca.pem`. Deleted on drop.
pub struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    /// The file `name` in the folder.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `redis-server` arguments serving TLS on `tls_port` with these files;
    /// client certificates are optional. The server presents the client
    /// certificate when it connects to other servers (cluster bus, replication).
    pub fn server_args(&self, tls_port: u16) -> Vec<String> {
        vec![
            "--tls-port".into(),
            tls_port.to_string(),
            "--tls-cert-file".into(),
            arg(&self.path("server.pem")),
            "--tls-key-file".into(),
            arg(&self.path("server.key")),
            "--tls-ca-cert-file".into(),
            arg(&self.path("ca.pem")),
            "--tls-client-cert-file".into(),
            arg(&self.path("client.pem")),
            "--tls-client-key-file".into(),
            arg(&self.path("client.key")),
            "--tls-auth-clients".into(),
            "optional".into(),
        ]
    }
}

fn ca(name: &str) -> (Certificate, KeyPair) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    (params.self_signed(&key).unwrap(), key)
}

fn leaf(ca: &(Certificate, KeyPair), usage: ExtendedKeyUsagePurpose) -> (Certificate, KeyPair) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.subject_alt_names = vec![
        SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        SanType::DnsName("localhost".try_into().unwrap()),
    ];
    params.distinguished_name.push(DnType::CommonName, "memorix test");
    params.extended_key_usages = vec![usage];
    (params.signed_by(&key, &ca.0, &ca.1).unwrap(), key)
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files.
pub fn make_pki() -> Pki {
    let pki = Pki {
        dir: tempfile::tempdir().unwrap(),
    };
    let authority = ca("memorix test CA");
    let server = leaf(&authority, ExtendedKeyUsagePurpose::ServerAuth);
    let client = leaf(&authority, ExtendedKeyUsagePurpose::ClientAuth);
    let write = |name: &str, text: String| std::fs::write(pki.path(name), text).unwrap();
    write("ca.pem", authority.0.pem());
    write("server.pem", server.0.pem());
    write("server.key", server.1.serialize_pem());
    write("client.pem", client.0.pem());
    write("client.key", client.1.serialize_pem());
    let other = ca("some other CA");
    write("other-ca.pem", other.0.pem());
    pki
}

/// A path as a command-line argument.
pub fn arg(path: &Path) -> String {
    path.to_str().unwrap().to_owned()
}
