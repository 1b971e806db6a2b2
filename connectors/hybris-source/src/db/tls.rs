//! TLS pieces both drivers share: reading the CA file, the rustls
//! verifiers for the weaker modes, and turning a handshake failure into
//! advice naming the URL option to change.

use std::{error::Error as StdError, sync::Arc};

use rustls::{
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    client::WebPkiServerVerifier,
    crypto::CryptoProvider,
    pki_types::{pem::PemObject, CertificateDer, ServerName, UnixTime},
    CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

use super::url::{ConnectFailure, Dialect, Roots};

/// Why a TLS handshake failed, in the terms of the option to change.
#[derive(Debug, PartialEq, Eq)]
pub enum TlsTrouble {
    /// The server answered "no TLS here" to the TLS request.
    NotOffered,
    /// The certificate names another host (verify-full).
    WrongName(String),
    /// The certificate has expired or is not valid yet.
    OutOfDate(String),
    /// The certificate does not lead to the trusted CA, or is unusable.
    Untrusted(String),
}

pub fn tls_trouble(e: &(dyn StdError + 'static)) -> Option<TlsTrouble> {
    let mut next: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = next {
        // tokio-rustls wraps the rustls error in an io::Error, whose
        // source() skips it: look inside.
        let inner =
            err.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()).map(|i| i as &(dyn StdError + 'static));
        for candidate in [Some(err), inner].into_iter().flatten() {
            if let Some(rustls::Error::InvalidCertificate(cert)) = candidate.downcast_ref::<rustls::Error>() {
                return Some(match cert {
                    CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                        TlsTrouble::WrongName(cert.to_string())
                    }
                    CertificateError::Expired
                    | CertificateError::ExpiredContext { .. }
                    | CertificateError::NotValidYet
                    | CertificateError::NotValidYetContext { .. } => TlsTrouble::OutOfDate(cert.to_string()),
                    other => TlsTrouble::Untrusted(other.to_string()),
                });
            }
            if candidate.to_string().contains("server does not support TLS") {
                return Some(TlsTrouble::NotOffered);
            }
        }
        next = err.source();
    }
    None
}

/// What to tell the user, naming the URL option that fixes it in the
/// dialect's own words.
pub fn tls_advice(dialect: Dialect, trouble: &TlsTrouble, option: &str, roots: Option<&Roots>) -> String {
    let (ca_option, server, fallbacks, chain_only, encrypt_only) = match dialect {
        Dialect::Postgres => (
            "sslrootcert",
            "the PostgreSQL server does not offer it (ssl=off): turn on ssl in the server's postgresql.conf",
            "sslmode=prefer (TLS where offered) or sslmode=disable",
            "sslmode=verify-ca",
            "sslmode=require",
        ),
        Dialect::MySql => (
            "serverSslCert",
            "the MySQL/MariaDB server does not offer it (have_ssl is not YES): give the server ssl_cert and ssl_key",
            "sslMode=PREFERRED (TLS where offered) or sslMode=DISABLED",
            "sslMode=VERIFY_CA",
            "sslMode=REQUIRED",
        ),
    };
    let ca = match roots {
        Some(Roots::File(path)) => format!("the CA in {ca_option}={path}"),
        Some(Roots::System) => "the public web CAs".to_string(),
        None => "a trusted CA".to_string(),
    };
    match trouble {
        TlsTrouble::NotOffered => format!("{option} asks for TLS but {server}, or use {fallbacks}"),
        TlsTrouble::WrongName(why) => format!(
            "{option}: the server's certificate is not valid for the host in the URL ({why}): connect by a name the \
             certificate holds, or use {chain_only} to check the CA only"
        ),
        TlsTrouble::OutOfDate(why) => format!(
            "{option}: the server's certificate is out of date ({why}): renew the database server's certificate \
             (or check the worker's clock); {encrypt_only} would encrypt without checking it"
        ),
        TlsTrouble::Untrusted(why) => format!(
            "{option}: the server's certificate is not trusted by {ca} ({why}): set {ca_option} to the PEM file of \
             the CA that signed the server's certificate, or use {encrypt_only} to encrypt without checking it"
        ),
    }
}

/// Accepts any certificate (libpq's require and prefer): the connection is
/// encrypted against eavesdropping, not authenticated. Handshake signatures
/// are still checked, so the key exchange is sound.
#[derive(Debug)]
pub struct EncryptOnly(pub Arc<CryptoProvider>);

impl ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// verify-ca: the chain must lead to the CA; the host name is not checked
/// (webpki checks the chain first, so a name error means the chain passed).
#[derive(Debug)]
pub struct ChainOnly(pub Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.0.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

pub fn root_store(roots: Option<&Roots>) -> Result<RootCertStore, ConnectFailure> {
    let path = match roots {
        None | Some(Roots::System) => return Ok(RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() }),
        Some(Roots::File(path)) => path,
    };
    let certs = read_ca_file("sslrootcert", path)?;
    let mut store = RootCertStore::empty();
    let (added, _) = store.add_parsable_certificates(certs);
    if added == 0 {
        return Err(no_certificate("sslrootcert", path));
    }
    Ok(store)
}

fn no_certificate(option: &str, path: &str) -> ConnectFailure {
    ConnectFailure::Url(format!(
        "{option}={path} holds no usable PEM certificate (-----BEGIN CERTIFICATE-----): point {option} at the CA \
         that signed the server's certificate"
    ))
}

/// The certificates of a PEM CA file, checked before connecting so a wrong
/// path is named as such rather than as a failed connection.
pub fn read_ca_file(option: &str, path: &str) -> Result<Vec<CertificateDer<'static>>, ConnectFailure> {
    let certs =
        CertificateDer::pem_file_iter(path).and_then(|certs| certs.collect::<Result<Vec<_>, _>>()).map_err(|e| {
            ConnectFailure::Url(format!(
                "{option}={path}: cannot read the CA certificates ({e}): point {option} at a readable PEM file of \
                 the CA that signed the server's certificate"
            ))
        })?;
    if certs.is_empty() {
        return Err(no_certificate(option, path));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_tls_failure_names_the_option_that_fixes_it() {
        let ca = Roots::File("/etc/ca.pem".into());
        let text = tls_advice(Dialect::Postgres, &TlsTrouble::NotOffered, "sslmode=require", None);
        assert!(text.starts_with("sslmode=require asks for TLS") && text.contains("sslmode=prefer"), "{text}");
        let text =
            tls_advice(Dialect::Postgres, &TlsTrouble::WrongName("name".into()), "sslmode=verify-full", Some(&ca));
        assert!(text.contains("not valid for the host") && text.contains("sslmode=verify-ca"), "{text}");
        let text = tls_advice(
            Dialect::Postgres,
            &TlsTrouble::Untrusted("UnknownIssuer".into()),
            "sslmode=verify-ca",
            Some(&ca),
        );
        assert!(text.contains("sslrootcert=/etc/ca.pem (UnknownIssuer)") && text.contains("set sslrootcert"), "{text}");
    }

    #[test]
    fn mysql_advice_uses_the_jdbc_option_names() {
        let ca = Roots::File("/etc/ca.pem".into());
        let text = tls_advice(Dialect::MySql, &TlsTrouble::NotOffered, "sslMode=REQUIRED", None);
        assert!(text.starts_with("sslMode=REQUIRED asks for TLS") && text.contains("sslMode=PREFERRED"), "{text}");
        let text =
            tls_advice(Dialect::MySql, &TlsTrouble::WrongName("name".into()), "sslMode=VERIFY_IDENTITY", Some(&ca));
        assert!(text.contains("sslMode=VERIFY_CA"), "{text}");
        let text =
            tls_advice(Dialect::MySql, &TlsTrouble::Untrusted("UnknownIssuer".into()), "sslMode=VERIFY_CA", Some(&ca));
        assert!(text.contains("serverSslCert=/etc/ca.pem") && text.contains("sslMode=REQUIRED"), "{text}");
    }

    #[test]
    fn a_handshake_failure_inside_an_io_error_is_classified_by_the_certificate_problem() {
        let wrapped = |e: CertificateError| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, rustls::Error::InvalidCertificate(e))
        };
        assert!(matches!(tls_trouble(&wrapped(CertificateError::UnknownIssuer)), Some(TlsTrouble::Untrusted(_))));
        assert!(matches!(tls_trouble(&wrapped(CertificateError::NotValidForName)), Some(TlsTrouble::WrongName(_))));
        assert!(matches!(tls_trouble(&wrapped(CertificateError::Expired)), Some(TlsTrouble::OutOfDate(_))));
        assert_eq!(tls_trouble(&std::io::Error::other("connection refused")), None);
        let text = tls_advice(Dialect::Postgres, &TlsTrouble::OutOfDate("expired".into()), "sslmode=verify-full", None);
        assert!(
            text.starts_with("sslmode=verify-full: the server's certificate is out of date") && text.contains("renew"),
            "{text}"
        );
    }
}
