//! `serve --first-boot` on an empty state folder (a container's fresh volume): it provisions,
//! serves, leaves the admin key in a 0600 file and never in the log, and provisions only once.

use crate::support::{Conn, DIGIT, Reaped, client_tls, inferd_command, models_dir};
use std::io::BufRead;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Starts `serve --first-boot` on `state/inferd.toml`; returns the child, every log line up
/// to "ready in", and the address.
fn first_boot(state: &Path) -> (Reaped, Vec<String>, std::net::SocketAddr) {
    let mut child = inferd_command()
        .args(["serve", "--config"])
        .arg(state.join("inferd.toml"))
        .args(["--first-boot", "--first-boot-listen", "127.0.0.1:0"])
        .arg("--first-boot-models")
        .arg(models_dir())
        .env("INFERD_MODELS_ENABLED", "digits")
        .env("RUST_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut log = Vec::new();
    let mut addr = None;
    for line in stderr.lines().map_while(Result::ok) {
        if let Some(rest) = line.split("listening on https://").nth(1) {
            addr = rest.split_whitespace().next().map(|a| a.parse().unwrap());
        }
        let ready = line.contains("ready in");
        log.push(line);
        if ready {
            break;
        }
    }
    let addr = addr.unwrap_or_else(|| panic!("not listening; log:\n{}", log.join("\n")));
    (Reaped(child), log, addr)
}

fn infer(addr: std::net::SocketAddr, state: &Path, key: &str) -> u16 {
    let mut conn = Conn::open(addr, Some(client_tls(&state.join("tls/ca.pem"))));
    let head = format!(
        "POST /v2/models/digits/infer HTTP/1.1\r\nHost: x\r\nX-API-Key: {key}\r\nContent-Length: {}\r\n\r\n",
        DIGIT.len()
    );
    conn.send(head.as_bytes());
    conn.send(DIGIT.as_bytes());
    conn.response().status
}

#[test]
fn first_boot_provisions_an_empty_volume_and_keeps_the_key_out_of_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    let (server, log, addr) = first_boot(&state);
    let key_file = state.join(inferd::first_boot::ADMIN_KEY_FILE);
    let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let key = std::fs::read_to_string(&key_file)
        .unwrap()
        .trim()
        .to_owned();
    assert!(key.len() > 20, "key file holds {key:?}");
    assert!(log.iter().any(|l| l.contains(key_file.to_str().unwrap())));
    assert!(!log.iter().any(|l| l.contains(&key)), "the key was logged");
    assert_eq!(infer(addr, &state, &key), 200);
    assert_eq!(infer(addr, &state, "not-the-key"), 401);
    drop(server);

    // The operator has read and deleted the key: the next boot keeps the state as it is.
    std::fs::remove_file(&key_file).unwrap();
    let (_server, log, addr) = first_boot(&state);
    assert!(!key_file.exists());
    assert!(!log.iter().any(|l| l.contains("first boot")));
    assert_eq!(infer(addr, &state, &key), 200);
}

#[test]
fn first_boot_refuses_a_folder_that_holds_other_files() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("stray"), "x").unwrap();
    let out = inferd_command()
        .args(["serve", "--first-boot", "--config"])
        .arg(dir.path().join("inferd.toml"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("refusing to overwrite"), "{stderr}");
    assert!(!dir.path().join("inferd.toml").exists());
}
