//! PEM files for the worker's own TLS (the REST listener and `sluice health`):
//! certificate chains, private keys and CA bundles, read with errors that name
//! the setting the path came from. rustls with ring, chosen explicitly per
//! config (not the process default) because more than one provider may be
//! compiled into the workspace.

use std::{path::Path, sync::Arc};

use anyhow::{anyhow, bail, Context};
use rustls::{
    crypto::CryptoProvider,
    pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer},
    RootCertStore,
};

/// The crypto provider of every TLS config the worker builds.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads a file named by `setting`, saying which setting to fix when it fails.
pub fn read(setting: &str, path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("{setting}: cannot read {}", path.display()))
}

/// The certificates of a PEM file (`setting` names it in errors).
pub fn certificates(setting: &str, path: &Path, pem: &[u8]) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow!("{setting}: {} is not a valid PEM file: {e}", path.display()))?;
    if certs.is_empty() {
        bail!("{setting}: {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)", path.display());
    }
    Ok(certs)
}

/// The private key of a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn private_key(setting: &str, path: &Path, pem: &[u8]) -> anyhow::Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_slice(pem)
        .map_err(|e| anyhow!("{setting}: {} holds no usable PEM private key (PKCS#8, RSA or EC): {e}", path.display()))
}

/// A trust store of the CA certificates of a PEM file.
pub fn roots(setting: &str, path: &Path, pem: &[u8]) -> anyhow::Result<RootCertStore> {
    let mut store = RootCertStore::empty();
    for cert in certificates(setting, path, pem)? {
        store
            .add(cert)
            .map_err(|e| anyhow!("{setting}: a certificate of {} is not a usable CA: {e}", path.display()))?;
    }
    Ok(store)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_setting_and_the_file() {
        let path = Path::new("/nowhere/cert.pem");
        let e = read("rest_tls_cert", path).unwrap_err();
        assert!(format!("{e:#}").contains("rest_tls_cert: cannot read /nowhere/cert.pem"), "{e:#}");
        let e = certificates("rest_tls_cert", path, b"not pem").unwrap_err().to_string();
        assert!(e.contains("rest_tls_cert") && e.contains("no PEM certificate"), "{e}");
        let e = private_key("rest_tls_key", path, b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("rest_tls_key") && e.contains("private key"), "{e}");
    }
}
