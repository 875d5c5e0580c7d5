//! Offline authentication over real TLS: Ed25519 bearer tokens (signed by the device key
//! and by a foreign library), revocation picked up without a restart, the OAuth2 client
//! credentials flow end to end, mTLS, 401 versus 403, and JWKS discovery.

use crate::support::{Conn, DIGIT, TestServer, client_tls, raw_request};
use inferd::auth::client::{self, ClientsFile};
use inferd::auth::jwt::{Claims, TokenSigner};
use inferd::config::ClientAuthConfig;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, SanType,
};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

fn state(server: &TestServer) -> std::path::PathBuf {
    server.dir.path().join("state")
}

fn sign(server: &TestServer, sub: &str, scope: &str, ttl: Duration, jti: &str) -> String {
    let signer = TokenSigner::load(&state(server).join("token/signing-key.pem")).unwrap();
    let claims = Claims {
        client_id: None,
        sub: sub.into(),
        scopes: scope.split(' ').map(str::to_owned).collect(),
        ttl,
        issuer: None,
        // `inferd init` makes the device's first DNS name its audience.
        audience: Some("localhost".into()),
        jti: Some(jti.into()),
    };
    signer.sign(&claims, SystemTime::now()).unwrap()
}

fn infer_with(server: &TestServer, headers: &[(&str, &str)]) -> crate::support::Resp {
    let mut all = vec![("Content-Type", "application/json")];
    all.extend_from_slice(headers);
    server.request("POST", "/v2/models/digits/infer", &all, DIGIT.as_bytes())
}

#[test]
fn device_signed_token_is_accepted_and_scoped() {
    let server = TestServer::start();
    let token = sign(
        &server,
        "cam-1",
        "predict:digits",
        Duration::from_secs(300),
        "t1",
    );
    let bearer = format!("Bearer {token}");
    assert_eq!(
        infer_with(&server, &[("Authorization", &bearer)]).status,
        200
    );
    // Valid token without the scope: 403 insufficient_scope, not 401.
    let other = format!(
        "Bearer {}",
        sign(
            &server,
            "cam-1",
            "predict:sentiment",
            Duration::from_secs(300),
            "t2"
        )
    );
    let r = infer_with(&server, &[("Authorization", &other)]);
    assert_eq!((r.status, r.code().as_str()), (403, "insufficient_scope"));
    assert!(
        r.header("www-authenticate")
            .unwrap()
            .contains("insufficient_scope")
    );
    // Garbage and tampered tokens: 401 invalid_token.
    let r = infer_with(&server, &[("Authorization", "Bearer not.a.token")]);
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some(r#"Bearer realm="inferd", error="invalid_token""#)
    );
    let mut tampered = token.clone();
    tampered.pop();
    tampered.push(if token.ends_with('A') { 'B' } else { 'A' });
    assert_eq!(
        infer_with(&server, &[("Authorization", &format!("Bearer {tampered}"))]).status,
        401
    );
    // No credentials at all: 401 with a plain Bearer challenge.
    let r = infer_with(&server, &[]);
    assert_eq!(
        (r.status, r.header("www-authenticate")),
        (401, Some(r#"Bearer realm="inferd""#))
    );
}

#[test]
fn revocation_is_picked_up_without_a_restart() {
    let server = TestServer::start();
    let token = sign(
        &server,
        "cam-2",
        "predict",
        Duration::from_secs(300),
        "revoke-me",
    );
    let bearer = format!("Bearer {token}");
    assert_eq!(
        infer_with(&server, &[("Authorization", &bearer)]).status,
        200
    );
    inferd::provision::write_atomic(
        &state(&server).join("revocations.toml"),
        b"jti = [\"revoke-me\"]\n",
        0o644,
    )
    .unwrap();
    // The file is re-checked at most once a second; poll with requests, bounded in time.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut status = 200;
    while status == 200 && Instant::now() < deadline {
        status = infer_with(&server, &[("Authorization", &bearer)]).status;
    }
    assert_eq!(status, 401);
    // A broken revocations file keeps the last good state (still revoked, others fine).
    inferd::provision::write_atomic(&state(&server).join("revocations.toml"), b"jti = [", 0o644)
        .unwrap();
    let fresh = format!(
        "Bearer {}",
        sign(&server, "cam-2", "predict", Duration::from_secs(300), "ok")
    );
    assert_eq!(
        infer_with(&server, &[("Authorization", &fresh)]).status,
        200
    );
    assert_eq!(
        infer_with(&server, &[("Authorization", &bearer)]).status,
        401
    );
}

#[test]
fn api_keys_file_reloads_without_a_restart() {
    let server = TestServer::start();
    let keys = state(&server).join("api_keys.toml");
    let key = inferd::provision::rotate_key(&keys, "late", vec!["predict".into()]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut status = 401;
    while status == 401 && Instant::now() < deadline {
        status = infer_with(&server, &[("X-API-Key", &key)]).status;
    }
    assert_eq!(status, 200);
}

fn add_client(server: &TestServer, id: &str, scopes: &[&str]) -> String {
    let (secret, entry) =
        client::generate(id, scopes.iter().map(|s| s.to_string()).collect()).unwrap();
    let path = state(server).join("clients.toml");
    let mut file: ClientsFile = toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    file.client.push(entry);
    inferd::provision::write_atomic(&path, toml::to_string(&file).unwrap().as_bytes(), 0o600)
        .unwrap();
    secret
}

fn token_request(
    server: &TestServer,
    headers: &[(&str, &str)],
    form: &str,
) -> crate::support::Resp {
    let mut all = vec![("Content-Type", "application/x-www-form-urlencoded")];
    all.extend_from_slice(headers);
    server.request("POST", "/token", &all, form.as_bytes())
}

fn basic(id: &str, secret: &str) -> String {
    use ct_codecs::{Base64, Encoder};
    format!(
        "Basic {}",
        Base64::encode_to_string(format!("{id}:{secret}")).unwrap()
    )
}

#[test]
fn client_credentials_flow_end_to_end() {
    let mut secret = String::new();
    let server = TestServer::start_with(|c| {
        let path = c.auth.issuing.as_ref().unwrap().clients_file.clone();
        let (s, entry) =
            client::generate("line-3", vec!["predict:digits".into(), "metrics".into()]).unwrap();
        std::fs::write(
            &path,
            toml::to_string(&ClientsFile {
                client: vec![entry],
            })
            .unwrap(),
        )
        .unwrap();
        secret = s;
    });
    let auth = basic("line-3", &secret);
    let r = token_request(
        &server,
        &[("Authorization", &auth)],
        "grant_type=client_credentials&scope=predict%3Adigits",
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let v = r.json();
    assert_eq!(
        (v["token_type"].as_str(), v["scope"].as_str()),
        (Some("Bearer"), Some("predict:digits"))
    );
    assert!(v["expires_in"].as_u64().unwrap() > 0);
    let bearer = format!("Bearer {}", v["access_token"].as_str().unwrap());
    assert_eq!(
        infer_with(&server, &[("Authorization", &bearer)]).status,
        200
    );
    // Credentials in the body work too; no scope asked means every allowed scope.
    let form = format!("grant_type=client_credentials&client_id=line-3&client_secret={secret}");
    let r = token_request(&server, &[], &form);
    assert_eq!(r.json()["scope"], "predict:digits metrics");

    // RFC 6749 §5.2 errors.
    let r = token_request(
        &server,
        &[("Authorization", &basic("line-3", "wrong"))],
        "grant_type=client_credentials",
    );
    assert_eq!(
        (r.status, r.json()["error"].as_str()),
        (401, Some("invalid_client"))
    );
    assert!(r.header("www-authenticate").unwrap().starts_with("Basic"));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let r = token_request(
        &server,
        &[("Authorization", &auth)],
        "grant_type=password&username=a&password=b",
    );
    assert_eq!(
        (r.status, r.json()["error"].as_str()),
        (400, Some("unsupported_grant_type"))
    );
    let r = token_request(
        &server,
        &[("Authorization", &auth)],
        "grant_type=client_credentials&scope=admin",
    );
    assert_eq!(
        (r.status, r.json()["error"].as_str()),
        (400, Some("invalid_scope"))
    );
    let r = token_request(
        &server,
        &[("Authorization", &auth)],
        &format!("grant_type=client_credentials&client_id=line-3&client_secret={secret}"),
    );
    assert_eq!(
        (r.status, r.json()["error"].as_str()),
        (400, Some("invalid_request"))
    );
    let r = token_request(&server, &[("Authorization", &auth)], "scope=metrics");
    assert_eq!(
        (r.status, r.json()["error"].as_str()),
        (400, Some("invalid_request"))
    );
    let r = server.request(
        "POST",
        "/token",
        &[("Content-Type", "application/json")],
        b"{}",
    );
    assert_eq!(
        (r.status, r.json()["error"].as_str()),
        (400, Some("invalid_request"))
    );
    // A client added later is picked up without a restart.
    let late = add_client(&server, "late", &["predict"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut status = 401;
    while status == 401 && Instant::now() < deadline {
        status = token_request(
            &server,
            &[("Authorization", &basic("late", &late))],
            "grant_type=client_credentials",
        )
        .status;
    }
    assert_eq!(status, 200);
}

#[test]
fn jwks_lists_the_trusted_key() {
    let server = TestServer::start();
    let r = server.request("GET", "/.well-known/jwks.json", &[], b"");
    assert_eq!(r.status, 200);
    let v = r.json();
    let key = &v["keys"][0];
    assert_eq!(
        (key["kty"].as_str(), key["crv"].as_str()),
        (Some("OKP"), Some("Ed25519"))
    );
    let signer = TokenSigner::load(&state(&server).join("token/signing-key.pem")).unwrap();
    assert_eq!(key["kid"].as_str(), Some(signer.kid()));
}

/// A CA, and a device certificate with the given SAN URI, signed by it (PEM chain, key).
fn device_pki(
    dir: &Path,
    uri: &str,
) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "fleet CA");
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let mut leaf = CertificateParams::new(Vec::<String>::new()).unwrap();
    leaf.subject_alt_names = vec![SanType::URI(uri.try_into().unwrap())];
    leaf.distinguished_name.push(DnType::CommonName, "device");
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let key = KeyPair::generate().unwrap();
    let cert = leaf.signed_by(&key, &ca).unwrap();
    let (ca_path, cert_path, key_path) = (
        dir.join("fleet-ca.pem"),
        dir.join("device.pem"),
        dir.join("device-key.pem"),
    );
    std::fs::write(&ca_path, ca.pem()).unwrap();
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    (ca_path, cert_path, key_path)
}

fn client_with_cert(server: &TestServer, cert: &Path, key: &Path) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let base = client_tls(&state(server).join("tls/ca.pem"));
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_file(key).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = {
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(state(server).join("tls/ca.pem")).unwrap() {
            roots.add(c.unwrap()).unwrap();
        }
        roots
    };
    drop(base);
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .unwrap(),
    )
}

#[test]
fn client_certificate_is_a_principal() {
    let pki = tempfile::tempdir().unwrap();
    let (ca, cert, key) = device_pki(pki.path(), "spiffe://fleet/cam-9");
    let server = TestServer::start_with(|c| {
        c.tls.as_mut().unwrap().client = Some(ClientAuthConfig {
            crl: None,
            ca,
            required: false,
            scopes: vec!["predict:digits".into()],
        });
    });
    let mut conn = Conn::open(server.addr, Some(client_with_cert(&server, &cert, &key)));
    conn.send(&raw_request(
        "POST",
        "/v2/models/digits/infer",
        &[("Content-Type", "application/json")],
        DIGIT.as_bytes(),
    ));
    assert_eq!(conn.response().status, 200);
    // The certificate's scopes do not reach other models: 403.
    conn.send(&raw_request("GET", "/v2/models/sentiment", &[], b""));
    assert_eq!(conn.response().status, 403);
    // Optional mode: without a certificate, the client needs other credentials.
    assert_eq!(infer_with(&server, &[]).status, 401);
    assert_eq!(
        infer_with(&server, &[("X-API-Key", &server.key)]).status,
        200
    );
}

#[test]
fn required_client_certificate_refuses_the_handshake_without_one() {
    let pki = tempfile::tempdir().unwrap();
    let (ca, cert, key) = device_pki(pki.path(), "spiffe://fleet/cam-10");
    let server = TestServer::start_with(|c| {
        c.tls.as_mut().unwrap().client = Some(ClientAuthConfig {
            crl: None,
            ca,
            required: true,
            scopes: vec!["predict".into()],
        });
    });
    let mut anonymous = server.connect();
    anonymous.send(&raw_request("GET", "/healthz", &[], b""));
    assert!(
        anonymous.try_response(false).is_err(),
        "handshake without a certificate must fail"
    );
    let mut conn = Conn::open(server.addr, Some(client_with_cert(&server, &cert, &key)));
    conn.send(&raw_request("GET", "/healthz", &[], b""));
    assert_eq!(conn.response().status, 200);
}

#[test]
fn token_minted_by_pyjwt_is_accepted_over_tls() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/jwt");
    let policy: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures.join("policy.json")).unwrap())
            .unwrap();
    let cases: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures.join("tokens.json")).unwrap())
            .unwrap();
    let token_named = |name: &str| {
        cases
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap()["token"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let server = TestServer::start_with(|c| {
        let tokens = c.auth.tokens.as_mut().unwrap();
        tokens.keys_dir = fixtures.join("trusted");
        tokens.issuer = policy["issuer"].as_str().map(str::to_owned);
        tokens.audience = policy["audience"].as_str().map(str::to_owned);
    });
    let bearer = format!("Bearer {}", token_named("valid_until_2100"));
    assert_eq!(
        infer_with(&server, &[("Authorization", &bearer)]).status,
        200
    );
    // The algorithm-confusion attack from the same fixture: HS256 keyed with the public key.
    let forged = format!("Bearer {}", token_named("hs256_public_key_pem_as_secret"));
    assert_eq!(
        infer_with(&server, &[("Authorization", &forged)]).status,
        401
    );
}

#[test]
fn a_client_certificate_on_the_crl_fails_its_handshake() {
    use rcgen::{CertificateRevocationListParams, RevokedCertParams, SerialNumber};
    let pki = tempfile::tempdir().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "fleet CA");
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let device = |name: &str, serial: u64| {
        let mut leaf = CertificateParams::new(Vec::<String>::new()).unwrap();
        leaf.subject_alt_names = vec![SanType::URI(
            format!("spiffe://fleet/{name}").try_into().unwrap(),
        )];
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        leaf.serial_number = Some(SerialNumber::from(serial));
        let key = KeyPair::generate().unwrap();
        let cert = leaf.signed_by(&key, &ca).unwrap();
        let (cert_path, key_path) = (
            pki.path().join(format!("{name}.pem")),
            pki.path().join(format!("{name}-key.pem")),
        );
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (cert_path, key_path)
    };
    let (lost_cert, lost_key) = device("cam-lost", 1001);
    let (kept_cert, kept_key) = device("cam-kept", 1002);
    let crl = CertificateRevocationListParams {
        this_update: rcgen::date_time_ymd(2025, 1, 1),
        // Past already: an offline device keeps using the last CRL it was given.
        next_update: rcgen::date_time_ymd(2025, 2, 1),
        crl_number: SerialNumber::from(1u64),
        issuing_distribution_point: None,
        revoked_certs: vec![RevokedCertParams {
            serial_number: SerialNumber::from(1001u64),
            revocation_time: rcgen::date_time_ymd(2025, 1, 1),
            reason_code: None,
            invalidity_date: None,
        }],
        key_identifier_method: rcgen::KeyIdMethod::Sha256,
    }
    .signed_by(&ca)
    .unwrap();
    let (ca_path, crl_path) = (pki.path().join("ca.pem"), pki.path().join("crl.pem"));
    std::fs::write(&ca_path, ca.pem()).unwrap();
    std::fs::write(&crl_path, crl.pem().unwrap()).unwrap();
    let server = TestServer::start_with(|c| {
        c.tls.as_mut().unwrap().client = Some(ClientAuthConfig {
            crl: Some(crl_path),
            ca: ca_path,
            required: false,
            scopes: vec!["predict".into()],
        });
    });
    let infer_as = |cert: &Path, key: &Path| {
        let mut conn = Conn::open(server.addr, Some(client_with_cert(&server, cert, key)));
        conn.send(&raw_request(
            "POST",
            "/v2/models/digits/infer",
            &[("Content-Type", "application/json")],
            DIGIT.as_bytes(),
        ));
        conn.try_response(false).map(|r| r.status)
    };
    assert_eq!(infer_as(&kept_cert, &kept_key).unwrap(), 200);
    assert!(
        infer_as(&lost_cert, &lost_key).is_err(),
        "a revoked certificate must fail its handshake"
    );
}

#[test]
fn a_token_for_another_device_is_refused() {
    let server = TestServer::start();
    // `inferd init` made the device's first name its audience.
    assert_eq!(
        server
            .config
            .auth
            .tokens
            .as_ref()
            .unwrap()
            .audience
            .as_deref(),
        Some("localhost")
    );
    let signer = TokenSigner::load(&state(&server).join("token/signing-key.pem")).unwrap();
    let mint = |audience: Option<&str>| {
        let claims = Claims {
            client_id: None,
            sub: "cam-3".into(),
            scopes: vec!["predict".into()],
            ttl: Duration::from_secs(300),
            issuer: None,
            audience: audience.map(str::to_owned),
            jti: None,
        };
        signer.sign(&claims, SystemTime::now()).unwrap()
    };
    let status = |token: String| {
        infer_with(&server, &[("Authorization", &format!("Bearer {token}"))]).status
    };
    assert_eq!(status(mint(Some("localhost"))), 200);
    assert_eq!(status(mint(Some("gateway-17"))), 401);
    assert_eq!(status(mint(None)), 401);
}

#[test]
fn a_revocations_file_that_fails_to_reload_shows_in_readyz_and_metrics() {
    let server = TestServer::start();
    let revocations = state(&server).join("revocations.toml");
    // One keep-alive connection for the polling below: no handshake per poll.
    let conn = std::cell::RefCell::new(server.connect());
    let readyz = || {
        let mut conn = conn.borrow_mut();
        conn.send(&raw_request("GET", "/readyz", &[], b""));
        conn.response().json()
    };
    assert_eq!(readyz()["reload_failures"], serde_json::json!([]));
    std::fs::write(&revocations, "jti = [unclosed").unwrap();
    // Checked at most once a second; SIGHUP would force it. Poll without sleeping blindly.
    let started = Instant::now();
    let failing = loop {
        let r = readyz();
        if r["reload_failures"] != serde_json::json!([])
            || started.elapsed() > Duration::from_secs(10)
        {
            break r;
        }
        std::thread::yield_now();
    };
    assert_eq!(
        failing["ready"], true,
        "the previous revocations stay in force"
    );
    assert_eq!(
        failing["reload_failures"],
        serde_json::json!(["token_keys_or_revocations"])
    );
    assert!(
        !failing.to_string().contains("revocations.toml"),
        "no detail to anonymous callers"
    );
    assert!(
        server
            .metrics()
            .contains("inferd_reload_failing{file=\"token_keys_or_revocations\"} 1")
    );
    std::fs::write(&revocations, "jti = []\nsub = []\n").unwrap();
    let started = Instant::now();
    while readyz()["reload_failures"] != serde_json::json!([]) {
        assert!(started.elapsed() < Duration::from_secs(10), "recovers");
        std::thread::yield_now();
    }
    assert!(
        server
            .metrics()
            .contains("inferd_reload_failing{file=\"token_keys_or_revocations\"} 0")
    );
}
