//! TLS: the only file that touches rustls. Loads PEM certificate and key, and drives the
//! handshake and record I/O by hand over a blocking socket, so that every read honours the
//! caller's deadline (a client trickling bytes cannot stretch a handshake) and a peer that
//! closes mid-handshake ends the connection instead of spinning (RUSTSEC-2024-0336).

use rustls::ServerConnection;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Instant;

/// Why the TLS configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certificate file is missing, unreadable or holds no PEM certificate.
    #[error("TLS certificate {path}: {reason}")]
    Cert { path: String, reason: String },
    /// The client CA file is missing, unreadable or holds no usable certificate.
    #[error("TLS client CA {path}: {reason}")]
    ClientCa { path: String, reason: String },
    /// The client CRL file is missing, unreadable or holds no PEM CRL.
    #[error("TLS client CRL {path}: {reason}")]
    Crl { path: String, reason: String },
    /// The key file is missing, unreadable or holds no PEM private key.
    #[error("TLS private key {path}: {reason}")]
    Key { path: String, reason: String },
    /// rustls refused the pair (e.g. the key does not match the certificate).
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// Client certificates (mutual TLS): which CA signs them, which CRL revokes them, and
/// whether a handshake without one fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientAuth {
    /// PEM certificates of the CA that client certificates must chain to.
    pub ca: std::path::PathBuf,
    /// PEM certificate revocation lists (RFC 5280) of that CA.
    pub crl: Option<std::path::PathBuf>,
    /// A handshake without a valid client certificate fails; else one is verified when
    /// presented.
    pub required: bool,
}

/// A loaded server configuration, cheap to clone and share across connections. Clones
/// share one slot, so `replace` (a reload) reaches every clone: new handshakes use the new
/// certificate, connections already open keep theirs.
#[derive(Clone)]
pub struct TlsAcceptor {
    config: Arc<RwLock<Arc<rustls::ServerConfig>>>,
}

impl TlsAcceptor {
    /// Loads a PEM certificate chain and private key, and the client CA when mTLS is on.
    /// TLS 1.2 and 1.3 only, ring provider (ring, not aws-lc-rs: builds for ARM without
    /// cmake), ALPN `http/1.1`.
    pub fn load(cert: &Path, key: &Path, client: Option<&ClientAuth>) -> Result<Self, TlsError> {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
            .and_then(|it| it.collect::<Result<_, _>>())
            .map_err(|e| TlsError::Cert {
                path: cert.display().to_string(),
                reason: e.to_string(),
            })?;
        if certs.is_empty() {
            return Err(TlsError::Cert {
                path: cert.display().to_string(),
                reason: "no certificate in file".into(),
            });
        }
        let key_path = key;
        let key = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key {
            path: key.display().to_string(),
            reason: e.to_string(),
        })?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let builder = match client {
            None => builder.with_no_client_auth(),
            Some(client) => builder.with_client_cert_verifier(client_verifier(client, provider)?),
        };
        let mut config = builder.with_single_cert(certs, key).map_err(|e| {
            TlsError::Config(format!(
                "certificate {} and key {}: {e}",
                cert.display(),
                key_path.display()
            ))
        })?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsAcceptor {
            config: Arc::new(RwLock::new(Arc::new(config))),
        })
    }

    /// Puts `other`'s configuration (a freshly loaded certificate) in this acceptor's slot.
    pub fn replace(&self, other: &TlsAcceptor) {
        let fresh = other.current();
        *self.config.write().unwrap_or_else(|p| p.into_inner()) = fresh;
    }

    fn current(&self) -> Arc<rustls::ServerConfig> {
        // A poisoned slot still holds a complete configuration.
        self.config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Runs the handshake, which must finish before `deadline`.
    pub fn accept(&self, tcp: TcpStream, deadline: Instant) -> io::Result<TlsStream> {
        let conn = ServerConnection::new(self.current()).map_err(io::Error::other)?;
        let mut stream = TlsStream {
            conn,
            tcp,
            eof: false,
            wire_left: HANDSHAKE_WIRE_BYTES,
        };
        while stream.conn.is_handshaking() {
            stream.flush_tls(deadline)?;
            if !stream.conn.wants_read() {
                // Neither side can make progress: never loop here (the RUSTSEC-2024-0336 shape).
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "TLS handshake stalled",
                ));
            }
            stream.fill(deadline)?;
            // A close_notify riding with the client's last flight is a half-close (TLS 1.3);
            // only a close while the handshake is still unfinished ends it here.
            if stream.conn.is_handshaking() && (stream.eof || stream.peer_closed()) {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "peer closed during TLS handshake",
                ));
            }
        }
        stream.flush_tls(deadline)?;
        Ok(stream)
    }
}

/// Verifies client certificates against the configured CA (webpki: chain, validity,
/// client-auth EKU); optional mode lets clients without a certificate through.
fn client_verifier(
    client: &ClientAuth,
    provider: Arc<rustls::crypto::CryptoProvider>,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, TlsError> {
    let err = |reason: String| TlsError::ClientCa {
        path: client.ca.display().to_string(),
        reason,
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&client.ca).map_err(|e| err(e.to_string()))? {
        roots
            .add(cert.map_err(|e| err(e.to_string()))?)
            .map_err(|e| err(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(err("no certificate in file".into()));
    }
    let builder =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
    // Revocation of end-entity certificates by the CA's CRL; a CRL past its nextUpdate still
    // counts (an offline device may not get a fresh one for weeks).
    let builder = match &client.crl {
        None => builder,
        Some(path) => {
            let crl_err = |reason: String| TlsError::Crl {
                path: path.display().to_string(),
                reason,
            };
            let crls = CertificateRevocationListDer::pem_file_iter(path)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| crl_err(e.to_string()))?;
            if crls.is_empty() {
                return Err(crl_err("no CRL in file".into()));
            }
            builder.with_crls(crls).only_check_end_entity_revocation()
        }
    };
    let builder = if client.required {
        builder
    } else {
        builder.allow_unauthenticated()
    };
    builder.build().map_err(|e| err(e.to_string()))
}

/// Bytes a client may send for its side of a handshake: a ClientHello with post-quantum
/// key shares is ~2 KiB, a client certificate chain a few KiB; this leaves room for long
/// chains and still stops a client that would keep a handshake busy with records.
const HANDSHAKE_WIRE_BYTES: u64 = 64 * 1024;

/// A server-side TLS session over a blocking TCP socket.
pub struct TlsStream {
    conn: ServerConnection,
    tcp: TcpStream,
    eof: bool,
    /// Bytes that may still be read off the wire (see `limit_wire_bytes`).
    wire_left: u64,
}

impl TlsStream {
    /// The client's end-entity certificate, when one was presented and verified.
    pub fn client_cert(&self) -> Option<Arc<[u8]>> {
        self.conn
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| Arc::from(c.as_ref()))
    }

    pub fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    /// Caps the bytes read off the wire from now on; past it, reads fail with
    /// `FileTooLarge`. Records cost CPU to decrypt whether or not they carry data: this
    /// bounds what a client can make the server decrypt before a request is complete.
    pub fn limit_wire_bytes(&mut self, budget: u64) {
        self.wire_left = budget;
    }

    fn peer_closed(&mut self) -> bool {
        self.conn
            .process_new_packets()
            .map(|s| s.peer_has_closed())
            .unwrap_or(true)
    }

    /// Reads one batch of TLS records from the socket and processes them; sends any alert.
    fn fill(&mut self, deadline: Instant) -> io::Result<()> {
        let n = loop {
            super::deadline::set_deadline(&self.tcp, deadline)?;
            match self.conn.read_tls(&mut self.tcp) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(super::deadline::timeout_kind(e)),
            }
        };
        if n == 0 {
            self.eof = true;
        }
        self.wire_left = match self.wire_left.checked_sub(n as u64) {
            Some(left) => left,
            None => {
                return Err(io::Error::new(
                    io::ErrorKind::FileTooLarge,
                    "more TLS bytes than the request may take",
                ));
            }
        };
        if let Err(e) = self.conn.process_new_packets() {
            let _ = self.flush_tls(deadline);
            return Err(io::Error::new(io::ErrorKind::InvalidData, e));
        }
        Ok(())
    }

    /// Sends pending TLS records; every write call gets only what is left before `deadline`.
    fn flush_tls(&mut self, deadline: Instant) -> io::Result<()> {
        while self.conn.wants_write() {
            super::deadline::set_write_deadline(&self.tcp, deadline)?;
            match self.conn.write_tls(&mut self.tcp) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(super::deadline::timeout_kind(e)),
            }
        }
        Ok(())
    }

    /// Reads decrypted bytes; `Ok(0)` is end of stream.
    pub fn read(&mut self, buf: &mut [u8], deadline: Instant) -> io::Result<usize> {
        loop {
            match self.conn.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
            if self.eof {
                return Ok(0);
            }
            self.fill(deadline)?;
        }
    }

    /// Encrypts and sends all of `data` before `deadline`.
    pub fn write_all(&mut self, data: &[u8], deadline: Instant) -> io::Result<()> {
        // Chunks below rustls' default 64 KiB plaintext buffer limit, flushed in between.
        for chunk in data.chunks(16 * 1024) {
            self.conn.writer().write_all(chunk)?;
            self.flush_tls(deadline)?;
        }
        Ok(())
    }

    /// Sends close_notify.
    pub fn close(&mut self, deadline: Instant) {
        self.conn.send_close_notify();
        let _ = self.flush_tls(deadline);
    }
}
