//! TLS for mail connections (rustls, aws-lc-rs): the Mozilla roots plus an optional extra CA
//! (a corporate CA, or a test server's self-signed certificate).

use std::sync::Arc;

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use tokio_rustls::TlsConnector;

#[derive(Debug, thiserror::Error)]
#[error("TLS setup: {0}")]
pub struct TlsSetupError(pub String);

/// A connector trusting the web PKI roots and the certificates in `extra_ca_pem`.
pub fn connector(extra_ca_pem: Option<&[u8]>) -> Result<TlsConnector, TlsSetupError> {
    crate::init_crypto();
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(pem) = extra_ca_pem {
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| TlsSetupError(format!("extra CA: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| TlsSetupError(format!("extra CA: {e}")))?;
        }
    }
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}
