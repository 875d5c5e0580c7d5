//! Faults around the real binary at start-up: a corrupt or missing model, a bad or mismatched
//! TLS certificate, an unreadable keys file, a broken config or an unknown key each stop
//! `inferd serve` promptly with a non-zero exit and one `inferd: ...` line naming the culprit.
//! And the state folder: unwritable, the server still serves; a clock behind the last time
//! inferd saw refuses bearer tokens but not keys. (Faults at reload: `reload.rs`, `shutdown.rs`.)

use crate::support::{self, Conn, TestServer, client_tls, provisioned, raw_request};
use inferd::auth::jwt::{Claims, TokenSigner};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long a failing start may take, at most (it takes well under a second).
const START_LIMIT: Duration = Duration::from_secs(30);

/// `inferd serve` on `state`'s config with extra environment, its stderr lines on a channel.
fn spawn(state: &Path, env: &[(&str, &str)]) -> (Reaped, Receiver<String>) {
    let mut child = support::inferd_command()
        .args(["serve", "--config"])
        .arg(state.join("inferd.toml"))
        .env("INFERD_MODELS_ENABLED", "digits")
        .env("RUST_LOG", "info")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn inferd");
    let stderr = child.stderr.take().expect("piped stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (Reaped(child), rx)
}

/// The child, killed and reaped when dropped (also when a test fails).
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `inferd serve` expecting it to fail: its exit status and every stderr line. Panics,
/// with the log, if it gets ready instead or is still running after `START_LIMIT`.
fn serve_fails(state: &Path, env: &[(&str, &str)]) -> (ExitStatus, Vec<String>) {
    let (mut child, rx) = spawn(state, env);
    let deadline = Instant::now() + START_LIMIT;
    let mut lines = Vec::new();
    loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => {
                let ready = line.contains("ready in");
                lines.push(line);
                assert!(!ready, "started anyway:\n{}", lines.join("\n"));
            }
            // Stderr closed: the process has ended.
            Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => {
                panic!("still running after {START_LIMIT:?}:\n{}", lines.join("\n"))
            }
        }
    }
    (child.0.wait().expect("exit status"), lines)
}

/// Asserts `inferd serve` exits non-zero with exactly one error line (`main` prints the
/// error chain as `inferd: ...`), and returns that line.
fn refused_start(state: &Path, env: &[(&str, &str)]) -> String {
    let (status, lines) = serve_fails(state, env);
    let log = lines.join("\n");
    assert!(!status.success(), "exit {status:?}:\n{log}");
    // Log lines start with "[" (env_logger); everything else is the error, on one line.
    let errors: Vec<&String> = lines.iter().filter(|l| !l.starts_with('[')).collect();
    assert_eq!(errors.len(), 1, "one error line expected:\n{log}");
    assert!(errors[0].starts_with("inferd: "), "{log}");
    errors[0].clone()
}

/// Asserts the start is refused with an error line that contains every one of `names`.
fn refused_naming(state: &Path, env: &[(&str, &str)], names: &[&str]) {
    let line = refused_start(state, env);
    for name in names {
        assert!(line.contains(name), "{name:?} not named in: {line}");
    }
}

fn state_of(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("state")
}

/// A models folder holding a copy of the bundled digits model, whose files a test may break.
fn copied_models(dir: &tempfile::TempDir) -> PathBuf {
    let models = dir.path().join("models");
    crate::support::copy_digits(&models);
    models
}

#[test]
fn corrupt_model_onnx_fails_start_naming_the_file() {
    let (dir, _, _) = provisioned();
    let models = copied_models(&dir);
    let onnx = models.join("digits/model.onnx");
    let env = [("INFERD_MODELS_DIR", models.to_str().unwrap())];
    let original = std::fs::read(&onnx).unwrap();
    let broken: [(&str, Vec<u8>); 3] = [
        ("not protobuf", b"not onnx at all".to_vec()),
        ("truncated", original[..original.len() / 2].to_vec()),
        ("empty", Vec::new()),
    ];
    for (what, bytes) in broken {
        std::fs::write(&onnx, bytes).unwrap();
        let line = refused_start(&state_of(&dir), &env);
        assert!(line.contains(onnx.to_str().unwrap()), "{what}: {line}");
    }
}

#[test]
fn missing_model_folder_or_file_fails_start_naming_the_path() {
    let (dir, _, _) = provisioned();
    let state = state_of(&dir);
    let absent = dir.path().join("no-such-models");
    refused_naming(
        &state,
        &[("INFERD_MODELS_DIR", absent.to_str().unwrap())],
        &[absent.join("digits").to_str().unwrap()],
    );
    // The folder exists but lacks the enabled model.
    let empty = dir.path().join("empty-models");
    std::fs::create_dir(&empty).unwrap();
    refused_naming(
        &state,
        &[("INFERD_MODELS_DIR", empty.to_str().unwrap())],
        &[
            empty.join("digits").to_str().unwrap(),
            "no such model folder",
        ],
    );
    // The model folder lacks its ONNX file.
    let models = copied_models(&dir);
    std::fs::remove_file(models.join("digits/model.onnx")).unwrap();
    refused_naming(
        &state,
        &[("INFERD_MODELS_DIR", models.to_str().unwrap())],
        &[models.join("digits/model.onnx").to_str().unwrap()],
    );
    // An enabled model that no folder holds.
    refused_naming(&state, &[("INFERD_MODELS_ENABLED", "nope")], &["nope"]);
}

#[test]
fn unparsable_tls_certificate_or_key_fails_start_naming_the_file() {
    let (dir, _, _) = provisioned();
    let state = state_of(&dir);
    let cert = state.join("tls/cert.pem");
    let key = state.join("tls/key.pem");
    let good_cert = std::fs::read_to_string(&cert).unwrap();
    let good_key = std::fs::read_to_string(&key).unwrap();
    let truncated: String = good_cert
        .lines()
        .take(3)
        .map(|l| format!("{l}\n"))
        .collect();
    for bad in ["garbage\n", "", &truncated] {
        std::fs::write(&cert, bad).unwrap();
        refused_naming(&state, &[], &["tls/cert.pem"]);
    }
    std::fs::write(&cert, &good_cert).unwrap();
    for bad in ["garbage\n", &good_cert] {
        std::fs::write(&key, bad).unwrap();
        refused_naming(&state, &[], &["tls/key.pem"]);
    }
    std::fs::write(&key, &good_key).unwrap();
    let absent = dir.path().join("absent.pem");
    refused_naming(
        &state,
        &[("INFERD_TLS_CERT", absent.to_str().unwrap())],
        &[absent.to_str().unwrap()],
    );
}

#[test]
fn tls_key_not_matching_the_certificate_fails_start() {
    let (dir, _, _) = provisioned();
    let state = state_of(&dir);
    let (_, _, other_key) = inferd::provision::issue_tls(&["localhost".to_string()]).unwrap();
    std::fs::write(state.join("tls/key.pem"), other_key).unwrap();
    let line = refused_start(&state, &[]);
    assert!(
        line.contains("KeyMismatch") && line.contains("cert.pem") && line.contains("key.pem"),
        "{line}"
    );
}

#[test]
fn unreadable_keys_file_fails_start_naming_it() {
    // Tests run as root here, where `chmod 000` does not stop a read: a keys path that is a
    // folder, and one that does not exist, make the read fail for any user.
    let (dir, _, _) = provisioned();
    let state = state_of(&dir);
    let folder = dir.path().join("keys-folder");
    std::fs::create_dir(&folder).unwrap();
    let absent = dir.path().join("absent-keys.toml");
    for path in [&folder, &absent] {
        let path = path.to_str().unwrap();
        refused_naming(&state, &[("INFERD_AUTH_API_KEYS_FILE", path)], &[path]);
    }
    // Unparsable, and a key entry missing its hash.
    std::fs::write(state.join("api_keys.toml"), "[[key]\nid = ").unwrap();
    refused_naming(&state, &[], &["api_keys.toml"]);
    std::fs::write(state.join("api_keys.toml"), "[[key]]\nid = \"a\"\n").unwrap();
    refused_naming(&state, &[], &["api_keys.toml"]);
}

#[test]
fn broken_toml_config_fails_start_naming_the_file_and_line() {
    let (dir, _, _) = provisioned();
    let state = state_of(&dir);
    let path = state.join("inferd.toml");
    let good = std::fs::read_to_string(&path).unwrap();
    let line_no = good.lines().count() + 2;
    std::fs::write(&path, format!("{good}\n[limits\n")).unwrap();
    refused_naming(
        &state,
        &[],
        &[path.to_str().unwrap(), &format!("line {line_no}")],
    );
    let absent = dir.path().join("absent.toml");
    let (status, lines) = serve_fails_with_config(&absent);
    assert!(!status.success());
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("inferd: ") && l.contains(absent.to_str().unwrap())),
        "{lines:?}"
    );
}

/// `inferd serve --config <config>` with a config path that is not the state folder's.
fn serve_fails_with_config(config: &Path) -> (ExitStatus, Vec<String>) {
    let output = support::inferd_command()
        .args(["serve", "--config"])
        .arg(config)
        .output()
        .expect("run inferd");
    let stderr = String::from_utf8_lossy(&output.stderr);
    (output.status, stderr.lines().map(str::to_owned).collect())
}

#[test]
fn unknown_config_key_fails_start_naming_it() {
    let (dir, _, _) = provisioned();
    let state = state_of(&dir);
    let path = state.join("inferd.toml");
    let good = std::fs::read_to_string(&path).unwrap();
    let typo = good.replace("[limits]\n", "[limits]\nmax_conections = 3\n");
    assert_ne!(typo, good);
    std::fs::write(&path, typo).unwrap();
    refused_naming(&state, &[], &["inferd.toml", "max_conections"]);
    let top = format!("statedir = \"/tmp\"\n{good}");
    std::fs::write(&path, top).unwrap();
    refused_naming(&state, &[], &["inferd.toml", "statedir"]);
    // The same typo in the environment: refused too, not silently ignored.
    std::fs::write(&path, &good).unwrap();
    refused_naming(
        &state,
        &[("INFERD_LIMITS_MAX_CONECTIONS", "3")],
        &["INFERD_LIMITS_MAX_CONECTIONS"],
    );
}

/// A bearer token from the state folder's own signing key.
fn token(state: &Path) -> String {
    let signer = TokenSigner::load(&state.join("token/signing-key.pem")).unwrap();
    let claims = Claims {
        client_id: None,
        sub: "cam-1".into(),
        scopes: vec!["predict:digits".into()],
        ttl: Duration::from_secs(300),
        issuer: None,
        // `inferd init` makes the device's first DNS name its audience.
        audience: Some("localhost".into()),
        jti: Some("faults-1".into()),
    };
    signer.sign(&claims, SystemTime::now()).unwrap()
}

/// Status of `GET /v2/models/digits` with `header`, on a fresh TLS connection.
fn status(addr: SocketAddr, state: &Path, header: (&str, &str)) -> u16 {
    let mut conn = Conn::open(addr, Some(client_tls(&state.join("tls/ca.pem"))));
    conn.send(&raw_request("GET", "/v2/models/digits", &[header], b""));
    conn.response().status
}

#[test]
fn unwritable_state_folder_still_serves_tokens_and_keys_and_warns() {
    // No read-only mount as root: `state_dir` is a regular file, so every write into it
    // fails (ENOTDIR) the way a read-only or full disk makes write_atomic fail.
    let (dir, _, key) = provisioned();
    let state = state_of(&dir);
    let not_a_folder = dir.path().join("state-file");
    std::fs::write(&not_a_folder, "").unwrap();
    let (_child, rx) = spawn(
        &state,
        &[("INFERD_STATE_DIR", not_a_folder.to_str().unwrap())],
    );
    let deadline = Instant::now() + START_LIMIT;
    let mut log = Vec::new();
    let next = |log: &mut Vec<String>| -> String {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|e| panic!("{e}:\n{}", log.join("\n")));
        log.push(line.clone());
        line
    };
    let addr: SocketAddr = loop {
        let line = next(&mut log);
        if let Some(rest) = line.split("listening on https://").nth(1) {
            break rest.split_whitespace().next().unwrap().parse().unwrap();
        }
    };
    while !next(&mut log).contains("ready in") {}
    assert_eq!(status(addr, &state, ("X-API-Key", &key)), 200);
    // The first trusted token reading is when the last-seen time is written.
    let bearer = format!("Bearer {}", token(&state));
    assert_eq!(status(addr, &state, ("Authorization", &bearer)), 200);
    let warned = loop {
        let line = next(&mut log);
        if line.contains("cannot record the last-seen time") {
            break line;
        }
    };
    assert!(warned.contains("state-file/clock-last-seen"), "{warned}");
    assert_eq!(status(addr, &state, ("Authorization", &bearer)), 200);
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn clock_behind_the_last_seen_time_refuses_tokens_but_not_keys() {
    // A board that rebooted with its clock set back: the state folder remembers a later time.
    let ten_years = 10 * 365 * 86_400;
    let server = TestServer::start_with(|c| {
        std::fs::write(
            c.state_dir.join("clock-last-seen"),
            format!("{}\n", unix_now() + ten_years),
        )
        .unwrap();
    });
    let state = server.dir.path().join("state");
    let bearer = format!("Bearer {}", token(&state));
    assert_eq!(status(server.addr, &state, ("Authorization", &bearer)), 401);
    assert_eq!(status(server.addr, &state, ("X-API-Key", &server.key)), 200);
    let ready = server.request("GET", "/readyz", &[], b"").json();
    assert_eq!(ready["clock"]["trusted"], false, "{ready}");
}

#[test]
fn clock_ahead_of_the_last_seen_time_is_trusted_and_becomes_the_new_floor() {
    // The clock jumped forward (set by NTP after a day off): tokens work, and the new time
    // is recorded as the floor for the next start.
    let before = unix_now();
    let server = TestServer::start_with(|c| {
        std::fs::write(
            c.state_dir.join("clock-last-seen"),
            format!("{}\n", before - 86_400),
        )
        .unwrap();
    });
    let state = server.dir.path().join("state");
    let bearer = format!("Bearer {}", token(&state));
    assert_eq!(status(server.addr, &state, ("Authorization", &bearer)), 200);
    let recorded: u64 = std::fs::read_to_string(state.join("clock-last-seen"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(recorded >= before, "recorded {recorded}, before {before}");
    let ready = server.request("GET", "/readyz", &[], b"").json();
    assert_eq!(ready["clock"]["trusted"], true, "{ready}");
}
