//! Graceful shutdown of the real binary: SIGTERM stops accepting, lets the in-flight request
//! finish, and exits 0.

use crate::support::{Conn, client_tls, provisioned, spawn_serve};
use std::process::Command;

#[test]
fn sigterm_drains_an_in_flight_request_and_exits_zero() {
    let (dir, _config, key) = provisioned();
    let state = dir.path().join("state");
    let (mut child, lines, addr) = spawn_serve(&state);
    let (log_tx, log_rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        lines
            .map_while(Result::ok)
            .for_each(|l| drop(log_tx.send(l)))
    });
    let mut conn = Conn::open(addr, Some(client_tls(&state.join("tls/ca.pem"))));
    let body = br#"{"inputs":[{"name":"input","shape":[1,64],"datatype":"FP32","data":[0,0,5,13,9,1,0,0,0,0,13,15,10,15,5,0,0,3,15,2,0,11,8,0,0,4,12,0,0,8,8,0,0,5,8,0,0,9,8,0,0,4,11,0,1,12,7,0,0,2,14,5,10,12,0,0,0,0,6,13,10,0,0,0]}]}"#;
    let head = format!(
        "POST /v2/models/digits/infer HTTP/1.1\r\nHost: x\r\nX-API-Key: {key}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    // Head and half the body: the request is in flight when the signal lands.
    conn.send(head.as_bytes());
    conn.send(&body[..20]);
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    // Wait for the server to acknowledge the signal before finishing the body.
    let acknowledged = log_rx.iter().any(|l| l.contains("draining"));
    assert!(acknowledged, "no drain log line");
    conn.send(&body[20..]);
    let r = conn.response();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("connection"), Some("close"));
    let exit = child.wait().unwrap();
    assert!(exit.success(), "exit status {exit:?}");
    // New connections are refused after shutdown.
    assert!(std::net::TcpStream::connect(addr).is_err());
}

#[test]
fn sighup_reloads_everything_or_nothing() {
    let (dir, _config, _key) = provisioned();
    let state = dir.path().join("state");
    let (mut child, mut lines, addr) = spawn_serve(&state);
    let key = inferd::provision::rotate_key(
        &state.join("api_keys.toml"),
        "after-hup",
        vec!["predict".into()],
    )
    .unwrap();
    let hup = || {
        assert!(
            Command::new("kill")
                .args(["-HUP", &child.id().to_string()])
                .status()
                .unwrap()
                .success()
        )
    };
    let status = |key: &str| {
        let mut conn = Conn::open(addr, Some(client_tls(&state.join("tls/ca.pem"))));
        conn.send(
            format!("GET /v2/models/digits HTTP/1.1\r\nHost: x\r\nX-API-Key: {key}\r\n\r\n")
                .as_bytes(),
        );
        conn.response().status
    };
    // The reload is logged once it is done: wait for that line, then the new key works.
    hup();
    assert!(
        lines
            .by_ref()
            .map_while(Result::ok)
            .any(|l| l.contains("reload: keys, certificates"))
    );
    assert_eq!(status(&key), 200);
    // A broken config file: one error line naming it, and the old state keeps serving.
    let config_path = state.join("inferd.toml");
    let good = std::fs::read_to_string(&config_path).unwrap();
    std::fs::write(&config_path, format!("{good}\n[limits\n")).unwrap();
    hup();
    let failure = lines
        .by_ref()
        .map_while(Result::ok)
        .find(|l| l.contains("reload failed"))
        .unwrap();
    assert!(failure.contains("inferd.toml"), "{failure}");
    assert_eq!(status(&key), 200);
    std::fs::write(&config_path, good).unwrap();
    assert!(
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    std::thread::spawn(move || lines.for_each(drop));
    assert!(child.wait().unwrap().success());
}
