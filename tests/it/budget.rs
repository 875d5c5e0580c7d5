//! Resource budgets measured on the real binary, alone in its process: memory under bodies
//! built to amplify on every body route, CPU spent on junk before a request, connection
//! slots when one address holds them all, and inference places when one caller fills them.

use crate::support::{
    Conn, DIGIT, Reaped, Resp, TestServer, add_key, client_tls, connect_from, memory_peaks_kib,
    provisioned, raw_request, spawn_serve_with,
};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// The provisioned `max_body_bytes`: every amplifying body is this size, or just under it.
const MAX_BODY: usize = 4 * 1024 * 1024;

/// A second client address: all of 127.0.0.0/8 is loopback.
const OTHER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// The real binary on the config `inferd init` writes, with environment overrides.
struct Spawned {
    child: Reaped,
    addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    key: String,
    _dir: tempfile::TempDir,
}

impl Spawned {
    fn start(envs: &[(&str, &str)]) -> Spawned {
        let (dir, _config, key) = provisioned();
        let state = dir.path().join("state");
        let (child, lines, addr) = spawn_serve_with(&state, envs);
        let child = Reaped(child);
        thread::spawn(move || lines.for_each(drop));
        Spawned {
            child,
            addr,
            tls: client_tls(&state.join("tls/ca.pem")),
            key,
            _dir: dir,
        }
    }

    fn pid(&self) -> u32 {
        self.child.0.id()
    }

    fn connect(&self) -> Conn {
        Conn::open(self.addr, Some(self.tls.clone()))
    }

    fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
        let mut conn = self.connect();
        conn.send(&raw_request(method, path, headers, body));
        conn.response()
    }

    /// `/metrics`, asked from 127.0.0.2 (not one of the addresses a test holds connections
    /// from, so asking evicts none of them).
    fn metrics(&self) -> String {
        let mut conn = Conn::open_from(OTHER, self.addr, Some(self.tls.clone()));
        conn.send(&raw_request(
            "GET",
            "/metrics",
            &[("X-API-Key", &self.key)],
            b"",
        ));
        let r = conn.response();
        assert_eq!(r.status, 200);
        String::from_utf8(r.body).unwrap()
    }

    /// A sample's value (`name{labels}` exactly as exposed), 0 when absent.
    fn metric(&self, sample: &str) -> f64 {
        self.metrics()
            .lines()
            .find_map(|l| {
                l.strip_prefix(sample)?
                    .strip_prefix(' ')?
                    .trim()
                    .parse()
                    .ok()
            })
            .unwrap_or(0.0)
    }

    /// Requests answered with a 5xx other than 503 (the answer of every budget and cap), from
    /// `/metrics`.
    fn unexpected_5xx(&self) -> Vec<String> {
        self.metrics()
            .lines()
            .filter(|l| l.starts_with("inferd_requests_total{") && l.contains("status=\"5"))
            .filter(|l| !l.contains("status=\"503\""))
            .map(str::to_owned)
            .collect()
    }
}

/// Quotas no test here is about (the caps and budgets are the file's own).
const GENEROUS_QUOTAS: [(&str, &str); 4] = [
    ("INFERD_RATE_LIMIT_DEFAULT", "1000000/second"),
    ("INFERD_RATE_LIMIT_ANONYMOUS_PER_IP", "1000000/second"),
    ("INFERD_RATE_LIMIT_FAILED_AUTH_PER_IP", "1000000/second"),
    ("INFERD_RATE_LIMIT_TOKEN_PER_IP", "1000000/second"),
];

/// `prefix`, then `unit` repeated (comma-separated) as often as fits, then `suffix`: a body
/// of at most `MAX_BODY` bytes.
fn filled(prefix: &str, unit: &str, suffix: &str) -> Vec<u8> {
    let n = (MAX_BODY - prefix.len() - suffix.len() + 1) / (unit.len() + 1);
    let mut body = String::with_capacity(MAX_BODY);
    body.push_str(prefix);
    body.push_str(&format!("{unit},").repeat(n - 1));
    body.push_str(unit);
    body.push_str(suffix);
    assert!(body.len() <= MAX_BODY);
    body.into_bytes()
}

/// `body` as chunked transfer coding, in 16 KiB chunks.
fn chunked(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + body.len() / 1000 + 16);
    for chunk in body.chunks(16 * 1024) {
        out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        out.extend_from_slice(chunk);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

/// One hostile request: a head and a body, and the 4xx it must end with (`None`: any 4xx).
struct Shot {
    what: &'static str,
    path: &'static str,
    head: String,
    body: Vec<u8>,
    /// Waits for `100 Continue` before the body (refusals, 503s included, come first).
    expect: bool,
    want: Option<u16>,
}

impl Shot {
    fn new(
        what: &'static str,
        path: &'static str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Shot {
        let mut head = format!("POST {path} HTTP/1.1\r\nHost: localhost\r\n");
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        Shot {
            what,
            path,
            head,
            body,
            expect: true,
            want: None,
        }
    }

    /// The final answer (status, error code), or `None` when the server closed without one.
    fn fire(&self, conn: &mut Conn) -> Option<(u16, String)> {
        let chunked = self.head.contains("Transfer-Encoding: chunked");
        let mut head = self.head.clone();
        if !chunked {
            head.push_str(&format!("Content-Length: {}\r\n", self.body.len()));
        }
        if self.expect {
            head.push_str("Expect: 100-continue\r\n");
        }
        head.push_str("\r\n");
        conn.send(head.as_bytes());
        if self.expect {
            let first = conn.try_response(false).ok()?;
            if first.status != 100 {
                return Some((first.status, first.code()));
            }
        }
        conn.send_until_answered(&self.body);
        conn.try_response(false).ok().map(|r| (r.status, r.code()))
    }
}

/// The amplifying bodies, by route: each one refused, none of them parsed into anything
/// larger than itself.
fn shots(key: &str) -> Vec<Vec<Shot>> {
    let json = [("X-API-Key", key), ("Content-Type", "application/json")];
    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    let pairs = "a&".repeat(MAX_BODY / 2);
    let pairs = pairs.trim_end_matches('&').as_bytes().to_vec();
    let mut token = Shot::new("form of 2M empty pairs", "/token", &form, pairs);
    // Unasked: the whole body is on its way; the 413 must come from the head alone.
    token.expect = false;
    token.want = Some(413);
    let mut token_chunked = Shot::new(
        "chunked form of 2M empty pairs",
        "/token",
        &[form[0], ("Transfer-Encoding", "chunked")],
        chunked(&token.body),
    );
    token_chunked.want = Some(413);
    let token = vec![token, token_chunked];

    let predict = vec![
        Shot::new(
            "4 MiB text",
            "/predict",
            &json,
            filled(r#"{"text":""#, "aaaaaaa", r#""}"#),
        ),
        Shot::new(
            "1.4 MB of escapes in a text",
            "/predict",
            &json,
            filled(r#"{"text":""#, r"\u00e9\n", r#""}"#),
        ),
        Shot::new(
            "an unknown field of 1M empty arrays",
            "/predict",
            &json,
            filled(r#"{"text":" ","pad":["#, "[]", "]}"),
        ),
    ];

    let wrong_shape_input =
        r#"{"name":"input","shape":[1,65],"datatype":"FP32","data":[0]}"#.to_owned();
    let header = r#"{"inputs":[{"name":"input","shape":[1,64],"datatype":"FP32","parameters":{"binary_data_size":256}}]}"#;
    let header_len = header.len().to_string();
    let binary_leftover = [header.as_bytes(), &vec![0u8; MAX_BODY - header.len()]].concat();
    // The amplifying part comes first in every body: the parser has to walk it.
    let digits = vec![
        Shot::new(
            "request parameters of 1M empty arrays",
            "/v2/models/digits/infer",
            &json,
            filled(
                r#"{"parameters":{"x":["#,
                "[]",
                &format!(r#"]}},"inputs":[{wrong_shape_input}]}}"#),
            ),
        ),
        Shot::new(
            "input parameters of 2M zeros",
            "/v2/models/digits/infer",
            &json,
            filled(
                r#"{"inputs":[{"name":"input","shape":[1,64],"datatype":"FP32","parameters":{"a":["#,
                "0",
                &format!(r#"]}},"data":[{}]}}]}}"#, vec!["0"; 63].join(",")),
            ),
        ),
        Shot::new(
            "70k tiny inputs",
            "/v2/models/digits/infer",
            &json,
            filled(
                r#"{"inputs":["#,
                r#"{"name":"input","shape":[1],"datatype":"FP32","data":[0]}"#,
                "]}",
            ),
        ),
        Shot::new(
            "190k outputs",
            "/v2/models/digits/infer",
            &json,
            filled(
                r#"{"outputs":["#,
                r#"{"name":"x"}"#,
                &format!(r#"],{}"#, &DIGIT[1..]),
            ),
        ),
        Shot::new(
            "a shape of 2M dimensions",
            "/v2/models/digits/infer",
            &json,
            filled(
                r#"{"inputs":[{"name":"input","datatype":"FP32","data":[0],"shape":["#,
                "1",
                "]}]}",
            ),
        ),
        Shot::new(
            "binary data left over after the input",
            "/v2/models/digits/infer",
            &[
                ("X-API-Key", key),
                ("Inference-Header-Content-Length", &header_len),
            ],
            binary_leftover,
        ),
        Shot::new(
            "a raw binary batch of 16384 rows",
            "/v2/models/digits/infer",
            &[("X-API-Key", key), ("Inference-Header-Content-Length", "0")],
            vec![0u8; MAX_BODY],
        ),
    ];

    let sentiment = vec![
        Shot::new(
            "1M empty texts, shape [1000000]",
            "/v2/models/sentiment/infer",
            &json,
            filled(
                r#"{"inputs":[{"name":"text","shape":[1000000],"datatype":"BYTES","data":["#,
                r#""""#,
                "]}]}",
            ),
        ),
        Shot::new(
            "1M empty texts, shape [64]",
            "/v2/models/sentiment/infer",
            &json,
            filled(
                r#"{"inputs":[{"name":"text","shape":[64],"datatype":"BYTES","data":["#,
                r#""""#,
                "]}]}",
            ),
        ),
        Shot::new(
            "63 texts of 64 KiB",
            "/v2/models/sentiment/infer",
            &json,
            filled(
                r#"{"inputs":[{"name":"text","shape":[63],"datatype":"BYTES","data":["#,
                &format!(r#""{}""#, "a".repeat(64 * 1024 - 3)),
                "]}]}",
            ),
        ),
    ];
    vec![token, predict, digits, sentiment]
}

/// The `Environment=` assignments of the shipped systemd unit.
fn unit_environment() -> Vec<(String, String)> {
    let unit = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/inferd.service");
    std::fs::read_to_string(unit)
        .unwrap()
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Environment="))
        .flat_map(str::split_whitespace)
        .filter_map(|word| word.trim_matches('"').split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// Resets a process's resident peak (`VmHWM`) to what is resident now (`clear_refs` 5);
/// false when the kernel does not let us.
fn reset_peak(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

#[test]
fn amplifying_bodies_on_every_body_route_stay_within_64_mb() {
    // As a board runs it: the unit's environment (glibc's malloc settings) too. Without
    // them glibc keeps freed 4 MiB bodies in per-thread arenas and the peak climbs with
    // every round, well past what the body budget allows at once.
    let unit = unit_environment();
    let mut envs: Vec<(&str, &str)> = unit.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    envs.push(("INFERD_MODELS_ENABLED", "digits,sentiment"));
    envs.extend(GENEROUS_QUOTAS);
    let server = Spawned::start(&envs);
    let key = server.key.clone();
    let json = [
        ("X-API-Key", key.as_str()),
        ("Content-Type", "application/json"),
    ];
    // Warm-up: one ordinary request on each body route, so that models, connection threads
    // and buffers exist before measuring.
    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    let r = server.request("POST", "/token", &form, b"grant_type=client_credentials");
    assert_eq!(r.status, 401, "{}", String::from_utf8_lossy(&r.body));
    let r = server.request("POST", "/predict", &json, br#"{"text":"a fine film"}"#);
    assert_eq!(r.status, 200);
    let r = server.request("POST", "/v2/models/digits/infer", &json, DIGIT.as_bytes());
    assert_eq!(r.status, 200);
    let text =
        br#"{"inputs":[{"name":"text","shape":[1],"datatype":"BYTES","data":["a fine film"]}]}"#;
    let r = server.request("POST", "/v2/models/sentiment/infer", &json, text);
    assert_eq!(r.status, 200);
    let routes = shots(&key);
    // The peak so far is the model loader's: start from what is resident now.
    let reset = reset_peak(server.pid());
    let (_, hwm_before) = memory_peaks_kib(server.pid());

    // Four connections per route at once, all routes at the same time, every shot twice; a
    // shot refused for the body budget (503) is fired again until its route answers it.
    const ROUNDS: usize = 2;
    struct Outcome {
        path: &'static str,
        what: &'static str,
        want: Option<u16>,
        answer: Option<(u16, String)>,
        /// 503s before the answer, with their codes.
        refusals: Vec<String>,
    }
    let started = Instant::now();
    let outcomes: Mutex<Vec<Outcome>> = Mutex::new(Vec::new());
    thread::scope(|s| {
        for route in &routes {
            let next = Arc::new(Mutex::new(0usize));
            for _ in 0..4 {
                let (next, server, outcomes) = (next.clone(), &server, &outcomes);
                s.spawn(move || {
                    loop {
                        let i = {
                            let mut next = next.lock().unwrap();
                            *next += 1;
                            *next - 1
                        };
                        if i >= ROUNDS * route.len() {
                            return;
                        }
                        let shot = &route[i % route.len()];
                        let mut refusals = Vec::new();
                        let answer = loop {
                            let mut conn = server.connect();
                            match shot.fire(&mut conn) {
                                Some((503, code)) if refusals.len() < 200 => {
                                    refusals.push(code);
                                    // A pause before the next try, as Retry-After asks (shorter).
                                    thread::sleep(Duration::from_millis(20));
                                }
                                answer => break answer,
                            }
                        };
                        outcomes.lock().unwrap().push(Outcome {
                            path: shot.path,
                            what: shot.what,
                            want: shot.want,
                            answer,
                            refusals,
                        });
                    }
                });
            }
        }
    });
    let took = started.elapsed();
    let (_, hwm_after) = memory_peaks_kib(server.pid());
    let outcomes = outcomes.into_inner().unwrap();
    let refused: Vec<&String> = outcomes.iter().flat_map(|o| &o.refusals).collect();
    for o in &outcomes {
        eprintln!(
            "{} {}: {:?} after {} x 503",
            o.path,
            o.what,
            o.answer,
            o.refusals.len()
        );
    }
    eprintln!(
        "VmHWM {hwm_before} -> {hwm_after} KiB (+{} KiB; peak reset first: {reset}; \
         environment {unit:?}) over {} shots of up to 4 MiB ({} answered 503 first) in {took:?}",
        hwm_after - hwm_before,
        outcomes.len(),
        refused.len()
    );
    let fired: usize = routes.iter().map(|r| ROUNDS * r.len()).sum();
    assert_eq!(outcomes.len(), fired);
    for o in &outcomes {
        let (status, code) = o
            .answer
            .as_ref()
            .unwrap_or_else(|| panic!("{}: closed without an answer", o.what));
        match o.want {
            Some(want) => assert_eq!(*status, want, "{}: {code}", o.what),
            None => assert!((400..500).contains(status), "{}: {status} {code}", o.what),
        }
    }
    // Every 503 was the body budget's.
    assert!(
        refused.iter().all(|code| *code == "overloaded"),
        "{refused:?}"
    );
    assert!(
        hwm_after - hwm_before < 64 * 1024,
        "resident peak grew from {hwm_before} to {hwm_after} KiB"
    );
    assert_eq!(server.request("GET", "/healthz", &[], b"").status, 200);
    let errors = server.unexpected_5xx();
    assert!(errors.is_empty(), "5xx answered: {errors:?}");
}

/// Clock ticks per second of `/proc/PID/stat` times (`getconf CLK_TCK`; 100 on Linux).
fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// CPU seconds a process has used (user and system: fields 14 and 15 of `/proc/PID/stat`).
fn cpu_seconds(pid: u32, ticks: f64) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The command name (field 2) may hold spaces; the fields after it are plain.
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_name.split(' ').collect();
    // `after_name` starts at field 3.
    let utime: f64 = fields[14 - 3].parse().unwrap();
    let stime: f64 = fields[15 - 3].parse().unwrap();
    (utime + stime) / ticks
}

#[test]
fn pre_request_junk_costs_under_a_fifth_of_a_core() {
    let deadline = Duration::from_secs(2);
    let server = Spawned::start(&[("INFERD_LIMITS_HEADER_TIMEOUT_MS", "2000")]);
    let ticks = clock_ticks();
    // Handshakes first (their cost is the connection rate's business, not this test's).
    let mut flooders: Vec<Conn> = (0..2)
        .map(|_| {
            let mut conn = server.connect();
            conn.handshake();
            conn
        })
        .collect();
    // One more after a request of its own: blank lines between requests count the same.
    let mut after_request = server.connect();
    after_request.send(&raw_request("GET", "/healthz", &[], b""));
    assert_eq!(after_request.response().status, 200);
    flooders.push(after_request);
    // Two that dribble half a ClientHello, a byte at a time, until the deadline cuts them.
    let hello = {
        let name = "localhost".try_into().unwrap();
        let mut client = rustls::ClientConnection::new(server.tls.clone(), name).unwrap();
        let mut hello = Vec::new();
        client.write_tls(&mut hello).unwrap();
        hello
    };
    let dribblers: Vec<Conn> = (0..2).map(|_| Conn::open(server.addr, None)).collect();
    let cpu_before = cpu_seconds(server.pid(), ticks);
    let started = Instant::now();
    let junk = b"\r\n".repeat(32 * 1024);
    let (flooded, dribbled) = thread::scope(|s| {
        let flooded: Vec<_> = flooders
            .into_iter()
            .map(|mut conn| {
                let junk = &junk;
                s.spawn(move || {
                    let mut sent = 0usize;
                    while started.elapsed() < deadline + Duration::from_secs(1) {
                        if conn.answer_started() || conn.try_send(junk).is_err() {
                            break;
                        }
                        sent += junk.len();
                    }
                    let answered = started.elapsed();
                    let status = conn.try_response(false).ok().map(|r| r.status);
                    (status, answered, sent)
                })
            })
            .collect();
        let dribbled: Vec<_> = dribblers
            .into_iter()
            .map(|mut conn| {
                let hello = &hello;
                s.spawn(move || {
                    for byte in &hello[..hello.len() / 2] {
                        conn.send(&[*byte]);
                        // The read timeout paces the dribble: a byte per 100 ms.
                        if conn.wait_closed(Duration::from_millis(100)) {
                            return Some(started.elapsed());
                        }
                    }
                    conn.wait_closed(Duration::from_secs(5))
                        .then(|| started.elapsed())
                })
            })
            .collect();
        (
            flooded
                .into_iter()
                .map(|t| t.join().unwrap())
                .collect::<Vec<_>>(),
            dribbled
                .into_iter()
                .map(|t| t.join().unwrap())
                .collect::<Vec<_>>(),
        )
    });
    let window = started.elapsed();
    let cpu = cpu_seconds(server.pid(), ticks) - cpu_before;
    let fraction = cpu / deadline.as_secs_f64();
    eprintln!(
        "junk: {cpu:.3} CPU-s over {window:?} ({fraction:.3} of a core per header deadline); \
         floods {flooded:?} (status, answered after, bytes sent); dribbles cut after {dribbled:?}"
    );
    for (status, answered, _) in &flooded {
        // 431: the blank lines count against max_header_bytes (a close would also do).
        assert!(matches!(status, Some(431) | None), "{status:?}");
        assert!(*answered < deadline / 2, "answered after {answered:?}");
    }
    for cut in &dribbled {
        let cut = cut.expect("dribbler cut");
        assert!(
            cut >= deadline - Duration::from_millis(200) && cut < deadline * 2,
            "{cut:?}"
        );
    }
    assert!(fraction < 0.2, "{cpu:.3} CPU-s for junk");
    assert_eq!(server.request("GET", "/healthz", &[], b"").status, 200);
}

/// Ten requests in a row from 127.0.0.2, each on a fresh TLS connection, each answered 200
/// within a few seconds; their latencies.
fn ten_from_another_address(server: &Spawned) -> Vec<Duration> {
    (0..10)
        .map(|i| {
            let started = Instant::now();
            let mut conn = Conn::open_from(OTHER, server.addr, Some(server.tls.clone()));
            conn.send(&raw_request("GET", "/healthz", &[], b""));
            let r = conn.response();
            let took = started.elapsed();
            assert_eq!(r.status, 200, "request {i} from {OTHER}");
            assert!(took < Duration::from_secs(3), "request {i}: {took:?}");
            took
        })
        .collect()
}

#[test]
fn one_address_holding_every_slot_does_not_lock_out_another() {
    // 32 connections in all, and an operator's per-address cap as large: only the eviction
    // at the global cap can let another address in.
    let server = Spawned::start(&[
        ("INFERD_LIMITS_MAX_CONNECTIONS", "32"),
        ("INFERD_LIMITS_MAX_CONNECTIONS_PER_IP", "32"),
    ]);
    let local = IpAddr::V4(Ipv4Addr::LOCALHOST);
    // 40 silent sockets (more than the whole cap) and 8 slowloris heads, from 127.0.0.1.
    let idle: Vec<TcpStream> = (0..40).map(|_| connect_from(local, server.addr)).collect();
    let slow: Vec<Conn> = (0..8)
        .map(|_| {
            let mut conn = server.connect();
            conn.handshake();
            conn.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n");
            conn
        })
        .collect();
    let latencies = ten_from_another_address(&server);
    // 127.0.0.1's own oldest made room for its newest; the whole cap's oldest for 127.0.0.2
    // (once: each of its requests ends and leaves its slot to the next).
    let by_address = server.metric(r#"inferd_connections_evicted_total{cap="address"}"#);
    let global = server.metric(r#"inferd_connections_evicted_total{cap="global"}"#);
    eprintln!(
        "max 32 (32 per address), 48 held by 127.0.0.1: 127.0.0.2 served in {latencies:?}; \
         evicted {by_address} at the address cap, {global} at the global cap"
    );
    assert!(by_address >= 16.0 && global >= 1.0);
    drop((idle, slow));

    // The provisioned caps: 256 in all, 64 per address.
    let server = Spawned::start(&[]);
    let idle: Vec<TcpStream> = (0..300).map(|_| connect_from(local, server.addr)).collect();
    let latencies = ten_from_another_address(&server);
    let by_address = server.metric(r#"inferd_connections_evicted_total{cap="address"}"#);
    eprintln!(
        "max 256 (64 per address), 300 held by 127.0.0.1: 127.0.0.2 served in {latencies:?}; \
         evicted {by_address} at the address cap"
    );
    assert!(by_address >= 236.0, "{by_address}");
    drop(idle);
}

/// `n` texts of about 100 tokens each, as one OIP BYTES batch for the sentiment model.
fn long_texts(n: usize) -> String {
    let text =
        "the film was slow at first but the cast was warm and the ending was good ".repeat(6);
    serde_json::json!({
        "inputs": [{ "name": "text", "shape": [n], "datatype": "BYTES", "data": vec![text.trim(); n] }]
    })
    .to_string()
}

#[test]
fn a_key_at_its_in_flight_cap_does_not_stop_a_second_key() {
    let mut second = String::new();
    let server = TestServer::start_with(|c| {
        c.models.enabled = vec!["digits".into(), "sentiment".into()];
        c.limits.inference_threads = 1;
        c.limits.inference_queue = 2;
        c.limits.max_in_flight_per_caller = 1;
        // Long enough for all of A's under emulation (qemu-user) too.
        c.limits.queue_timeout = Duration::from_secs(600);
        second = add_key(c, "second", "predict");
    });
    // Eight texts of ~100 tokens: ~0.3 s of the one worker per batch (x86_64).
    let batch = long_texts(8);
    let infer = |key: &str, body: &str| {
        let started = Instant::now();
        let mut conn = server.connect();
        // Under emulation (qemu-user) a batch takes tens of seconds: wait as long as the
        // server's own queue timeout allows.
        conn.tcp()
            .set_read_timeout(Some(Duration::from_secs(600)))
            .unwrap();
        conn.send(&raw_request(
            "POST",
            "/v2/models/sentiment/infer",
            &[("X-API-Key", key), ("Content-Type", "application/json")],
            body.as_bytes(),
        ));
        (conn.response().status, started.elapsed())
    };
    let started = Instant::now();
    let (a, b) = thread::scope(|s| {
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let a: Vec<_> = (0..6)
            .map(|_| {
                let (done_tx, batch, key) = (done_tx.clone(), &batch, &server.key);
                s.spawn(move || {
                    let (status, took) = infer(key, batch);
                    let _ = done_tx.send(());
                    (status, started.elapsed(), took)
                })
            })
            .collect();
        // Once the first of A's requests is answered (a refusal of its excess, or its first
        // batch) the other five have long been sent: one runs, one waits, the rest were
        // refused. B's short request goes now.
        done_rx.recv().unwrap();
        let b_sent = started.elapsed();
        let (b_status, b_took) = infer(&second, &long_texts(1));
        let b = (b_status, b_sent + b_took, b_took);
        let a: Vec<_> = a.into_iter().map(|t| t.join().unwrap()).collect();
        (a, b)
    });
    eprintln!("A (status, done at, took): {a:?}; B: {b:?}");
    // A holds the worker and its half of the queue; its excess is refused at once (503),
    // what it already has is served.
    assert!(
        a.iter().all(|(status, _, _)| [200, 503].contains(status)),
        "{a:?}"
    );
    assert!(a.iter().any(|(status, _, _)| *status == 200), "{a:?}");
    assert!(
        a.iter().any(|(status, _, _)| *status == 503),
        "A never at its cap: {a:?}"
    );
    // B finds room in the queue and is served after at most A's running and queued jobs.
    assert_eq!(b.0, 200, "B refused");
    let a_served = a.iter().filter(|(status, _, _)| *status == 200).count();
    assert!(a_served <= 3, "A served {a_served} before and around B");
}

/// The OIP `timeout` parameter (Triton's schedule-policy extension, microseconds) caps how
/// long a request waits for a worker: with the only worker busy on a long batch, a request
/// asking for 20 ms is refused 503 with `Retry-After` and answered before the batch ends,
/// though the server's own queue timeout is ten minutes. A timeout that is not a whole
/// number of microseconds is 400 before anything runs.
#[test]
fn a_request_waits_no_longer_than_its_oip_timeout() {
    let server = TestServer::start_with(|c| {
        c.models.enabled = vec!["digits".into(), "sentiment".into()];
        c.limits.inference_threads = 1;
        c.limits.queue_timeout = Duration::from_secs(600);
        c.rate_limit.enabled = false;
    });
    let with_timeout =
        |t: &str| DIGIT.replacen('{', &format!(r#"{{"parameters":{{"timeout":{t}}},"#), 1);
    let r = server.post_json("/v2/models/digits/infer", &with_timeout("-5"));
    assert_eq!((r.status, r.code()), (400, "invalid_parameter".to_owned()));
    let queue_waits = || {
        server
            .metrics()
            .lines()
            .find_map(|l| l.strip_prefix("inferd_inference_queue_wait_seconds_count "))
            .and_then(|n| n.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let before = queue_waits();
    thread::scope(|s| {
        let long = s.spawn(|| {
            let mut conn = server.connect();
            conn.tcp()
                .set_read_timeout(Some(Duration::from_secs(600)))
                .unwrap();
            conn.send(&raw_request(
                "POST",
                "/v2/models/sentiment/infer",
                &[
                    ("X-API-Key", &server.key),
                    ("Content-Type", "application/json"),
                ],
                long_texts(16).as_bytes(),
            ));
            (conn.response().status, Instant::now())
        });
        // The batch holds the worker once its queue wait is recorded (when a worker takes it).
        while queue_waits() <= before {
            assert!(
                !long.is_finished(),
                "the batch ended before it was seen starting"
            );
        }
        let r = server.post_json("/v2/models/digits/infer", &with_timeout("20000"));
        let short_done = Instant::now();
        assert_eq!((r.status, r.code()), (503, "overloaded".to_owned()));
        let retry: u32 = r
            .header("retry-after")
            .expect("Retry-After")
            .parse()
            .unwrap();
        assert!((1..=60).contains(&retry), "{retry}");
        let (status, long_done) = long.join().unwrap();
        assert_eq!(status, 200);
        assert!(short_done < long_done, "answered before the batch ended");
    });
    // With the worker free, a request with a timeout runs.
    let r = server.post_json("/v2/models/digits/infer", &with_timeout("5000000"));
    assert_eq!(r.status, 200);
}
