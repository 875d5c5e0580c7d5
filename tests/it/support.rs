//! `TestServer`: a real inferd on 127.0.0.1:0 over real TLS, provisioned by `init` into a
//! temp folder, and a small raw HTTP/1.1 client that can also misbehave on purpose.

use inferd::config::Config;
use inferd::provision::{self, InitOptions};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Index of the largest value (a classifier's answer).
pub fn argmax(values: impl IntoIterator<Item = f64>) -> usize {
    values
        .into_iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map_or(0, |(i, _)| i)
}

/// The real binary as a command. When the suite runs for another architecture, cargo's
/// target runner wraps only the test binary; `TEST_SPAWN_RUNNER` (e.g. `qemu-aarch64-static
/// -L /`) puts the same emulator in front of the binary the tests spawn. (Not an `INFERD_`
/// name: the server refuses unknown `INFERD_*` variables, and children inherit it.)
pub fn inferd_command() -> std::process::Command {
    let exe = env!("CARGO_BIN_EXE_inferd");
    let runner = std::env::var("TEST_SPAWN_RUNNER").unwrap_or_default();
    let mut words = runner.split_whitespace();
    match words.next() {
        Some(program) => {
            let mut command = std::process::Command::new(program);
            command.args(words).arg(exe);
            command
        }
        None => std::process::Command::new(exe),
    }
}

/// Runs the real binary on a provisioned state folder and waits for the address it logs once
/// it listens (no sleeps, no fixed port). Returns the child, its remaining log lines, and the
/// address.
pub fn spawn_serve(
    state: &Path,
) -> (
    std::process::Child,
    std::io::Lines<std::io::BufReader<std::process::ChildStderr>>,
    SocketAddr,
) {
    spawn_serve_with(state, &[])
}

/// `spawn_serve` with environment overrides (`INFERD_<SECTION>_<KEY>`) on top of the file;
/// they are applied after the default `INFERD_MODELS_ENABLED=digits`, so they may replace it.
pub fn spawn_serve_with(
    state: &Path,
    envs: &[(&str, &str)],
) -> (
    std::process::Child,
    std::io::Lines<std::io::BufReader<std::process::ChildStderr>>,
    SocketAddr,
) {
    use std::io::BufRead;
    let mut command = inferd_command();
    command
        .args(["serve", "--config"])
        .arg(state.join("inferd.toml"))
        .env("INFERD_MODELS_ENABLED", "digits")
        .env("RUST_LOG", "info")
        .stderr(std::process::Stdio::piped());
    for (name, value) in envs {
        command.env(name, value);
    }
    let mut child = command.spawn().expect("spawn inferd");
    let mut lines = std::io::BufReader::new(child.stderr.take().expect("piped stderr")).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("server exited early")
            .expect("log line");
        if let Some(rest) = line.split("listening on https://").nth(1) {
            let addr = rest.split_whitespace().next().expect("logged address");
            break addr.parse().expect("logged address");
        }
    };
    // The port opens before the models load; serve logs "ready in" once they have.
    assert!(
        lines
            .by_ref()
            .map_while(Result::ok)
            .any(|l| l.contains("ready in")),
        "server exited before it was ready"
    );
    (child, lines, addr)
}

/// An OIP request for the digits model: sklearn's first digit, a handwritten zero.
pub const DIGIT: &str = r#"{"inputs":[{"name":"input","shape":[1,64],"datatype":"FP32","data":[0,0,5,13,9,1,0,0,0,0,13,15,10,15,5,0,0,3,15,2,0,11,8,0,0,4,12,0,0,8,8,0,0,5,8,0,0,9,8,0,0,4,11,0,1,12,7,0,0,2,14,5,10,12,0,0,0,0,6,13,10,0,0,0]}]}"#;

/// Copies the bundled digits model into `models/digits` (for tests that break its files).
pub fn copy_digits(models: &Path) {
    let from = models_dir().join("digits");
    std::fs::create_dir_all(models.join("digits")).expect("models folder");
    for entry in std::fs::read_dir(from).expect("bundled digits") {
        let entry = entry.expect("entry");
        if entry.file_type().expect("type").is_file() {
            std::fs::copy(entry.path(), models.join("digits").join(entry.file_name()))
                .expect("copy");
        }
    }
}

pub fn models_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("models")
}

/// The real binary, killed and reaped when dropped (also when the test fails).
pub struct Reaped(pub std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A process's peak virtual size and peak resident size (`VmPeak`, `VmHWM`), in KiB.
pub fn memory_peaks_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} in {status}"))
    };
    (field("VmPeak:"), field("VmHWM:"))
}

/// Adds an API key with one scope to the config's keys file (before the server starts, or
/// before a reload) and returns the key.
pub fn add_key(c: &Config, id: &str, scope: &str) -> String {
    use inferd::auth::api_key::{self, KeysFile};
    let (key, entry) = api_key::generate(id, vec![scope.into()]).unwrap();
    let path = &c.auth.api_keys_file;
    let mut file: KeysFile = toml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    file.key.push(entry);
    std::fs::write(path, toml::to_string(&file).unwrap()).unwrap();
    key
}

pub struct TestServer {
    running: Option<inferd::Running>,
    pub addr: SocketAddr,
    pub key: String,
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub dir: tempfile::TempDir,
    /// The configuration the server started with.
    pub config: Config,
}

/// Provisions a state folder and returns it with its parsed config and admin key.
pub fn provisioned() -> (tempfile::TempDir, Config, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let state = dir.path().join("state");
    let opts = InitOptions {
        listen: "127.0.0.1:0".into(),
        names: vec!["localhost".into(), "127.0.0.1".into()],
        models_dir: models_dir(),
        ..InitOptions::default()
    };
    let p = provision::init(&state, &opts).expect("init");
    let mut config = Config::load(&p.config, |_| None).expect("config");
    config.models.enabled = vec!["digits".into()];
    config.log.access = false;
    // Limits no test reaches unless it sets its own (tests/it/limits.rs does).
    let unlimited = inferd::config::Rate::parse("1000000/second").expect("rate");
    config.rate_limit.default = unlimited;
    config.rate_limit.anonymous_per_ip = unlimited;
    config.rate_limit.failed_auth_per_ip = unlimited;
    config.rate_limit.token_per_ip = unlimited;
    config.rate_limit.connections_per_ip = unlimited;
    (dir, config, p.api_key)
}

pub fn client_tls(ca_pem: &Path) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_pem).expect("ca") {
        roots.add(cert.expect("ca cert")).expect("add ca");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

impl TestServer {
    /// Digits only, TLS, defaults.
    pub fn start() -> TestServer {
        TestServer::start_with(|_| {})
    }

    /// Lets the test adjust the config (limits, models, TLS) before starting.
    pub fn start_with(adjust: impl FnOnce(&mut Config)) -> TestServer {
        let (dir, mut config, key) = provisioned();
        adjust(&mut config);
        let running = inferd::start(&config).expect("server starts");
        let tls = config
            .tls
            .as_ref()
            .map(|_| client_tls(&dir.path().join("state/tls/ca.pem")));
        TestServer {
            addr: running.local_addr(),
            running: Some(running),
            key,
            tls,
            dir,
            config,
        }
    }

    /// The app new requests see now.
    pub fn app(&self) -> Arc<inferd::App> {
        self.running.as_ref().expect("running").app()
    }

    /// What SIGHUP does, with `config` as the re-read file.
    pub fn reload(&self, config: Config) -> Result<(), inferd::StartError> {
        self.running
            .as_ref()
            .expect("running")
            .appliance
            .reload(config)
    }

    /// `GET /metrics` with the admin key, as text.
    pub fn metrics(&self) -> String {
        let r = self.request("GET", "/metrics", &[("X-API-Key", &self.key)], b"");
        assert_eq!(r.status, 200);
        String::from_utf8(r.body).expect("utf-8 exposition")
    }

    pub fn connect(&self) -> Conn {
        Conn::open(self.addr, self.tls.clone())
    }

    /// One request on a fresh connection, with exactly the given headers (no key added).
    pub fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
        let mut conn = self.connect();
        conn.send(&raw_request(method, path, headers, body));
        conn.response()
    }

    /// POST JSON with the admin key.
    pub fn post_json(&self, path: &str, body: &str) -> Resp {
        self.request(
            "POST",
            path,
            &[
                ("X-API-Key", self.key.as_str()),
                ("Content-Type", "application/json"),
            ],
            body.as_bytes(),
        )
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(running) = self.running.take() {
            running.stopper().stop();
            running.wait();
        }
    }
}

pub fn raw_request(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\n");
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// A parsed response.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// The stable error code of an error body.
    pub fn code(&self) -> String {
        self.json()["code"].as_str().unwrap_or_default().to_owned()
    }
}

enum Transport {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

/// One client connection.
pub struct Conn {
    transport: Transport,
    buf: Vec<u8>,
    /// A write failed (the server closed while a body was on its way): TLS bytes may be
    /// left unsent, and reads must not try to flush them first.
    write_failed: bool,
}

impl Conn {
    pub fn open(addr: SocketAddr, tls: Option<Arc<rustls::ClientConfig>>) -> Conn {
        Conn::from_tcp(TcpStream::connect(addr).expect("connect"), tls)
    }

    /// A connection from another loopback address (`127.0.0.2`): the socket is bound to
    /// `source` before it connects, so the server sees a second client.
    pub fn open_from(
        source: std::net::IpAddr,
        addr: SocketAddr,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> Conn {
        Conn::from_tcp(connect_from(source, addr), tls)
    }

    /// Wraps a connected socket (TLS when `tls` is given; the handshake starts on first use).
    pub fn from_tcp(tcp: TcpStream, tls: Option<Arc<rustls::ClientConfig>>) -> Conn {
        tcp.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        let transport = match tls {
            None => Transport::Plain(tcp),
            Some(config) => {
                let name = ServerName::try_from("localhost").expect("name");
                let conn = rustls::ClientConnection::new(config, name).expect("client");
                Transport::Tls(Box::new(rustls::StreamOwned::new(conn, tcp)))
            }
        };
        Conn {
            transport,
            buf: Vec::new(),
            write_failed: false,
        }
    }

    pub fn tcp(&self) -> &TcpStream {
        match &self.transport {
            Transport::Plain(t) => t,
            Transport::Tls(s) => &s.sock,
        }
    }

    /// Completes the TLS handshake now (it otherwise happens on first write).
    pub fn handshake(&mut self) {
        if let Transport::Tls(s) = &mut self.transport {
            while s.conn.is_handshaking() {
                s.conn.complete_io(&mut s.sock).expect("handshake");
            }
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        let _ = self.try_send(bytes);
    }

    pub fn try_send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let sent = match &mut self.transport {
            Transport::Plain(t) => t.write_all(bytes),
            Transport::Tls(s) => s.write_all(bytes).and_then(|_| s.flush()),
        };
        self.write_failed |= sent.is_err();
        sent
    }

    fn read_more(&mut self) -> std::io::Result<usize> {
        let mut chunk = [0u8; 16384];
        let n = match &mut self.transport {
            Transport::Plain(t) => t.read(&mut chunk),
            // rustls' `Stream` flushes pending writes before it reads: after a failed write
            // that fails too, and the answer already received would be lost. Read records
            // straight off the socket instead.
            Transport::Tls(s) if self.write_failed && !s.conn.is_handshaking() => loop {
                match s.conn.reader().read(&mut chunk) {
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        if s.conn.read_tls(&mut s.sock)? == 0 {
                            break Err(std::io::ErrorKind::UnexpectedEof.into());
                        }
                        s.conn
                            .process_new_packets()
                            .map_err(std::io::Error::other)?;
                    }
                    read => break read,
                }
            },
            Transport::Tls(s) => s.read(&mut chunk),
        }?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// Reads one response (`HEAD` responses: pass `head_only`).
    pub fn try_response(&mut self, head_only: bool) -> std::io::Result<Resp> {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut parsed = httparse::Response::new(&mut headers);
            if let Ok(httparse::Status::Complete(len)) = parsed.parse(&self.buf) {
                let status = parsed.code.unwrap_or(0);
                let headers: Vec<(String, String)> = parsed
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_ascii_lowercase(),
                            String::from_utf8_lossy(h.value).into_owned(),
                        )
                    })
                    .collect();
                let length: usize = headers
                    .iter()
                    .find(|(n, _)| n == "content-length")
                    .map(|(_, v)| v.parse().unwrap_or(0))
                    .unwrap_or(0);
                let length = if head_only || status == 100 {
                    0
                } else {
                    length
                };
                while self.buf.len() < len + length {
                    if self.read_more()? == 0 {
                        return Err(std::io::ErrorKind::UnexpectedEof.into());
                    }
                }
                let body = self.buf[len..len + length].to_vec();
                self.buf.drain(..len + length);
                return Ok(Resp {
                    status,
                    headers,
                    body,
                });
            }
            if self.read_more()? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        }
    }

    /// Whether the server has started to answer, or closed: reads what has arrived without
    /// waiting (TLS records that carry no data, such as session tickets, do not count).
    pub fn answer_started(&mut self) -> bool {
        if !self.buf.is_empty() {
            return true;
        }
        self.tcp().set_nonblocking(true).expect("nonblocking");
        let read = self.read_more();
        self.tcp().set_nonblocking(false).expect("blocking");
        match read {
            Ok(_) => true,
            Err(e) => !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
            ),
        }
    }

    /// Sends `bytes` in 16 KiB pieces and stops as soon as the server answers or closes (a
    /// refusal before or while it reads a body): a client that kept writing into a closed
    /// connection would be reset and lose that answer. True when it stopped early.
    pub fn send_until_answered(&mut self, bytes: &[u8]) -> bool {
        for piece in bytes.chunks(16 * 1024) {
            if self.answer_started() || self.try_send(piece).is_err() {
                return true;
            }
        }
        false
    }

    pub fn response(&mut self) -> Resp {
        self.try_response(false).expect("a response")
    }

    /// Waits up to `timeout` for the server to close the connection (EOF or reset); false if
    /// it is still open then. Bytes that arrive meanwhile (an error response) are kept.
    pub fn wait_closed(&mut self, timeout: Duration) -> bool {
        self.tcp().set_read_timeout(Some(timeout)).expect("timeout");
        let closed = self.closed_by_server();
        self.tcp()
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        closed
    }

    /// Bytes received and not yet parsed as a response.
    pub fn received(&self) -> &[u8] {
        &self.buf
    }

    /// True when the server has closed the connection (EOF or reset), within the read timeout.
    pub fn closed_by_server(&mut self) -> bool {
        loop {
            match self.read_more() {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e) => {
                    return !matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    );
                }
            }
        }
    }
}

/// A TCP connection to `addr` from the loopback address `source` (any port).
pub fn connect_from(source: std::net::IpAddr, addr: SocketAddr) -> TcpStream {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None).expect("socket");
    socket
        .bind(&SocketAddr::new(source, 0).into())
        .expect("bind the source address");
    socket.connect(&addr.into()).expect("connect");
    socket.into()
}
