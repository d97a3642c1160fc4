//! The rustls client configuration: trust roots, verification per sslmode, ALPN.
//!
//! The name verified (and sent as SNI) is the DSQL hostname, never the tunnel address: that is
//! decided in `connect.rs`, which hands `host` to the TLS connector.

use crate::config::{Config, RootCerts, Verification};
use crate::error::Error;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::sync::{Arc, OnceLock};

/// ALPN protocol PostgreSQL 17+ and DSQL require for direct TLS; harmless with SSLRequest.
pub const ALPN_POSTGRESQL: &[u8] = b"postgresql";

/// The one crypto provider in the build (ring), passed explicitly so rustls never has to guess.
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER.get_or_init(|| Arc::new(rustls::crypto::ring::default_provider())).clone()
}

fn bundled_roots() -> Arc<RootCertStore> {
    static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    ROOTS.get_or_init(|| Arc::new(RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() })).clone()
}

fn load_roots(roots: &RootCerts) -> Result<Arc<RootCertStore>, Error> {
    match roots {
        RootCerts::Bundled => Ok(bundled_roots()),
        RootCerts::System => {
            let found = rustls_native_certs::load_native_certs();
            let mut store = RootCertStore::empty();
            let (added, _) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(Error::config(
                    "sslrootcert",
                    "sslrootcert=system found no certificates in the operating system's store",
                ));
            }
            Ok(Arc::new(store))
        }
        RootCerts::Pem(text) => {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(text.as_bytes())
                .collect::<Result<_, _>>()
                .map_err(|e| Error::config("ssl.ca", format!("ssl.ca is not valid PEM: {e}")))?;
            let mut store = RootCertStore::empty();
            let (added, _) = store.add_parsable_certificates(certs);
            if added == 0 {
                return Err(Error::config("ssl.ca", "ssl.ca holds no usable CA certificate"));
            }
            Ok(Arc::new(store))
        }
        RootCerts::File(path) => {
            let shown = path.display();
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .map_err(|e| Error::config("sslrootcert", format!("cannot read sslrootcert file {shown}: {e}")))?
                .collect::<Result<_, _>>()
                .map_err(|e| Error::config("sslrootcert", format!("sslrootcert file {shown} is not valid PEM: {e}")))?;
            let mut store = RootCertStore::empty();
            let (added, _) = store.add_parsable_certificates(certs);
            if added == 0 {
                return Err(Error::config(
                    "sslrootcert",
                    format!("sslrootcert file {shown} holds no usable CA certificate"),
                ));
            }
            Ok(Arc::new(store))
        }
    }
}

/// Builds the TLS client configuration for `config`.
pub fn client_config(config: &Config) -> Result<Arc<ClientConfig>, Error> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::config("sslmode", format!("TLS set-up failed: {e}")))?;
    let verification = config.verification();
    let mut tls = if verification == Verification::None {
        builder.dangerous().with_custom_certificate_verifier(Arc::new(NoVerification(provider))).with_no_client_auth()
    } else {
        let roots = load_roots(&config.sslrootcert)?;
        let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider)
            .build()
            .map_err(|e| Error::config("sslrootcert", format!("cannot use the trust roots: {e}")))?;
        if verification == Verification::Full {
            builder.with_webpki_verifier(webpki).with_no_client_auth()
        } else {
            builder.dangerous().with_custom_certificate_verifier(Arc::new(ChainOnly(webpki))).with_no_client_auth()
        }
    };
    tls.alpn_protocols = vec![ALPN_POSTGRESQL.to_vec()];
    Ok(Arc::new(tls))
}

/// `verify-ca`: the chain must reach a trusted root; the name is not checked.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // webpki checks the chain before the name, so a name error means the chain was good.
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

/// `require`: encrypted, but any certificate is accepted (the handshake signature is still checked).
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
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
        verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{resolve, Inputs};

    fn config(pairs: &[(&str, &str)]) -> Config {
        let options = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        resolve(&Inputs { options, ..Default::default() }).unwrap()
    }

    #[test]
    fn bundled_roots_include_amazon_root_ca_1() {
        let has_amazon = webpki_roots::TLS_SERVER_ROOTS
            .iter()
            .any(|a| String::from_utf8_lossy(a.subject.as_ref()).contains("Amazon Root CA 1"));
        assert!(has_amazon);
        let tls = client_config(&config(&[("host", "x.dsql.us-east-1.on.aws")])).unwrap();
        assert_eq!(tls.alpn_protocols, vec![b"postgresql".to_vec()]);
    }

    #[test]
    fn missing_root_file_is_a_config_error() {
        let e = client_config(&config(&[("host", "h"), ("sslrootcert", "/nonexistent/ca.pem")])).unwrap_err();
        assert_eq!(e.code(), "INVALID_CONFIG");
        assert!(e.to_string().contains("/nonexistent/ca.pem"));
    }
}
