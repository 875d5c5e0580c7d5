//! Model versions, Triton's repository extension (index, load, unload), statistics and
//! model config, over real TLS: a load swaps versions in whole, a failed load keeps the old
//! version answering, requests in flight never see a gap, SIGHUP reloads only what changed.

use crate::support::{DIGIT, TestServer, add_key, models_dir, raw_request};
use inferd::config::VersionPolicy;
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Writes version `version` of digits (the bundled files, the manifest's version set to
/// the folder's) into `models/digits/N/`.
fn add_version(models: &Path, version: u64) {
    let from = models_dir().join("digits");
    let to = models.join("digits").join(version.to_string());
    std::fs::create_dir_all(&to).unwrap();
    std::fs::copy(from.join("model.onnx"), to.join("model.onnx")).unwrap();
    let manifest = std::fs::read_to_string(from.join("model.toml")).unwrap();
    let manifest = manifest.replace("version = \"1\"", &format!("version = \"{version}\""));
    std::fs::write(to.join("model.toml"), manifest).unwrap();
}

/// A server on `models/` holding digits in `versions`.
fn serving(models: &Path, versions: &[u64]) -> TestServer {
    for &v in versions {
        add_version(models, v);
    }
    let dir = models.to_path_buf();
    TestServer::start_with(move |c| c.models.dir = dir)
}

fn get(server: &TestServer, path: &str) -> crate::support::Resp {
    server.request("GET", path, &[("X-API-Key", &server.key)], b"")
}

fn post(server: &TestServer, path: &str, body: &str) -> crate::support::Resp {
    server.request("POST", path, &[("X-API-Key", &server.key)], body.as_bytes())
}

fn index(server: &TestServer) -> Vec<Value> {
    let r = post(server, "/v2/repository/index", "");
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.json().as_array().unwrap().clone()
}

fn entry(index: &[Value], version: &str) -> Value {
    index
        .iter()
        .find(|e| e["name"] == "digits" && e["version"] == version)
        .unwrap_or_else(|| panic!("digits v{version} not in {index:?}"))
        .clone()
}

/// The version that answered an inference on the bare route.
fn answering_version(server: &TestServer) -> String {
    let r = server.post_json("/v2/models/digits/infer", DIGIT);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.json()["model_version"].as_str().unwrap().to_owned()
}

#[test]
fn the_policy_picks_the_served_versions_and_the_index_says_why_not_the_others() {
    let models = tempfile::tempdir().unwrap();
    let server = serving(models.path(), &[1, 2]);
    let meta = get(&server, "/v2/models/digits").json();
    assert_eq!(meta["versions"], json!(["2"]));
    assert_eq!(answering_version(&server), "2");
    let r = server.post_json("/v2/models/digits/versions/1/infer", DIGIT);
    assert_eq!(r.status, 404);
    let r = server.post_json("/v2/models/digits/versions/2/infer", DIGIT);
    assert_eq!(r.status, 200);
    let listed = index(&server);
    assert_eq!(entry(&listed, "2")["state"], "READY");
    let v1 = entry(&listed, "1");
    assert_eq!(v1["state"], "UNAVAILABLE");
    assert!(v1["reason"].as_str().unwrap().contains("latest 1"), "{v1}");
    let ready = post(&server, "/v2/repository/index", r#"{"ready": true}"#).json();
    assert_eq!(
        ready,
        json!([{ "name": "digits", "version": "2", "state": "READY" }])
    );

    let mut all = server.config.clone();
    all.models
        .version_policies
        .insert("digits".into(), VersionPolicy::All);
    server.reload(all).unwrap();
    assert_eq!(
        get(&server, "/v2/models/digits").json()["versions"],
        json!(["1", "2"])
    );
    let r = server.post_json("/v2/models/digits/versions/1/infer", DIGIT);
    assert_eq!(
        (r.status, r.json()["model_version"].as_str()),
        (200, Some("1"))
    );
}

#[test]
fn a_load_swaps_in_new_versions_and_a_failed_one_keeps_the_old_answering() {
    let models = tempfile::tempdir().unwrap();
    let server = serving(models.path(), &[1]);
    add_version(models.path(), 2);
    let r = post(&server, "/v2/repository/models/digits/load", "{}");
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["versions"], json!(["2"]));
    assert_eq!(answering_version(&server), "2");

    add_version(models.path(), 3);
    let onnx = models.path().join("digits/3/model.onnx");
    let bytes = std::fs::read(&onnx).unwrap();
    std::fs::write(&onnx, &bytes[..bytes.len() / 2]).unwrap();
    let r = post(&server, "/v2/repository/models/digits/load", "");
    assert_eq!((r.status, r.code().as_str()), (409, "load_failed"));
    assert_eq!(answering_version(&server), "2");
    let v3 = entry(&index(&server), "3");
    assert_eq!(v3["state"], "UNAVAILABLE");
    assert!(
        v3["reason"].as_str().unwrap().contains("model.onnx"),
        "{v3}"
    );
    assert_eq!(entry(&index(&server), "2")["state"], "READY");

    let unload = r#"{"parameters": {"unload_dependents": false}}"#;
    let r = post(&server, "/v2/repository/models/digits/unload", unload);
    assert_eq!(r.status, 200);
    let r = server.post_json("/v2/models/digits/infer", DIGIT);
    assert_eq!(r.status, 404);
    assert_eq!(entry(&index(&server), "2")["reason"], "unloaded");
    std::fs::remove_dir_all(models.path().join("digits/3")).unwrap();
    let r = post(&server, "/v2/repository/models/digits/load", "");
    assert_eq!(r.status, 200);
    assert_eq!(answering_version(&server), "2");
}

#[test]
fn the_repository_api_is_for_admins_and_takes_only_plain_names() {
    let models = tempfile::tempdir().unwrap();
    let server = serving(models.path(), &[1]);
    let predict = add_key(&server.config, "app", "predict");
    server.reload(server.config.clone()).unwrap();
    for path in [
        "/v2/repository/index",
        "/v2/repository/models/digits/load",
        "/v2/repository/models/digits/unload",
    ] {
        let r = server.request("POST", path, &[("X-API-Key", &predict)], b"");
        assert_eq!(r.status, 403, "{path}");
        let r = server.request("POST", path, &[], b"");
        assert_eq!(r.status, 401, "{path}");
    }
    for name in ["nothing", "..", ".digits", "%2e%2e"] {
        let r = post(&server, &format!("/v2/repository/models/{name}/load"), "");
        assert_eq!(r.status, 404, "{name}");
    }
    let r = post(
        &server,
        "/v2/repository/models/digits/load",
        r#"{"parameters": {"config": "{}"}}"#,
    );
    assert_eq!(
        (r.status, r.code().as_str()),
        (400, "unsupported_parameter")
    );
    let r = get(&server, "/v2/repository/index");
    assert_eq!(r.status, 405);
}

#[test]
fn statistics_count_the_requests_sent_and_config_describes_the_model() {
    let server = TestServer::start();
    let batch: Vec<f32> = (0..128).map(|i| (i % 16) as f32).collect();
    let two = json!({ "inputs": [{ "name": "input", "shape": [2, 64], "datatype": "FP32",
                                   "data": batch }] })
    .to_string();
    for _ in 0..3 {
        assert_eq!(
            server.post_json("/v2/models/digits/infer", &two).status,
            200
        );
    }
    let wrong = DIGIT.replace("[1,64]", "[1,63]");
    assert_eq!(
        server.post_json("/v2/models/digits/infer", &wrong).status,
        422
    );
    let stats = get(&server, "/v2/models/digits/stats").json();
    let s = &stats["model_stats"][0];
    assert_eq!(
        (s["name"].as_str(), s["version"].as_str()),
        (Some("digits"), Some("1"))
    );
    assert_eq!(s["inference_count"], 6);
    assert_eq!(s["execution_count"], 3);
    let i = &s["inference_stats"];
    for (kind, count) in [
        ("success", 3),
        ("fail", 1),
        ("queue", 3),
        ("compute_infer", 3),
    ] {
        assert_eq!(i[kind]["count"], count, "{kind}: {s}");
    }
    assert!(i["success"]["ns"].as_u64().unwrap() >= i["compute_infer"]["ns"].as_u64().unwrap());
    assert!(s["last_inference"].as_u64().unwrap() > 0);
    let one = get(&server, "/v2/models/digits/versions/1/stats").json();
    assert_eq!(one["model_stats"][0]["execution_count"], 3);
    assert_eq!(
        get(&server, "/v2/models/digits/versions/9/stats").status,
        404
    );

    let all = get(&server, "/v2/models/stats").json();
    assert_eq!(all["model_stats"].as_array().unwrap().len(), 1);
    let other = add_key(&server.config, "other", "predict:sentiment");
    server.reload(server.config.clone()).unwrap();
    let r = server.request("GET", "/v2/models/stats", &[("X-API-Key", &other)], b"");
    assert_eq!(r.json(), json!({ "model_stats": [] }));
    let r = server.request(
        "GET",
        "/v2/models/digits/stats",
        &[("X-API-Key", &other)],
        b"",
    );
    assert_eq!(r.status, 403);

    let config = get(&server, "/v2/models/digits/config").json();
    assert_eq!(config["name"], "digits");
    assert_eq!(config["max_batch_size"], 64);
    assert_eq!(
        config["input"],
        json!([{ "name": "input", "data_type": "TYPE_FP32", "dims": [64] }])
    );
    assert_eq!(config["output"][0]["dims"], json!([10]));
    assert_eq!(
        config["version_policy"],
        json!({ "latest": { "num_versions": 1 } })
    );
}

#[test]
fn sighup_reloads_only_the_versions_whose_files_changed() {
    let models = tempfile::tempdir().unwrap();
    let server = serving(models.path(), &[1]);
    let app = || server.app();
    let before = app().models.get("digits", Some("1")).unwrap();
    server.reload(server.config.clone()).unwrap();
    let same = app().models.get("digits", Some("1")).unwrap();
    assert!(
        Arc::ptr_eq(&before, &same),
        "an unchanged version was loaded again"
    );

    add_version(models.path(), 2);
    let mut two = server.config.clone();
    two.models.version_policy = VersionPolicy::Latest(2);
    server.reload(two.clone()).unwrap();
    let kept = app().models.get("digits", Some("1")).unwrap();
    assert!(Arc::ptr_eq(&before, &kept));
    assert_eq!(app().models.versions("digits"), vec![1, 2]);

    let manifest = models.path().join("digits/1/model.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(&manifest, format!("{text}\n# edited\n")).unwrap();
    server.reload(two).unwrap();
    let fresh = app().models.get("digits", Some("1")).unwrap();
    assert!(
        !Arc::ptr_eq(&before, &fresh),
        "a changed version was not reloaded"
    );
}

#[test]
fn requests_in_flight_see_no_gap_while_models_load() {
    let models = tempfile::tempdir().unwrap();
    let server = Arc::new(serving(models.path(), &[1]));
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let clients: Vec<_> = (0..3)
        .map(|_| {
            let (server, stop, ok, failed) =
                (server.clone(), stop.clone(), ok.clone(), failed.clone());
            std::thread::spawn(move || {
                let mut conn = server.connect();
                let headers = [("X-API-Key", server.key.as_str())];
                while !stop.load(Ordering::SeqCst) {
                    let request = raw_request(
                        "POST",
                        "/v2/models/digits/infer",
                        &headers,
                        DIGIT.as_bytes(),
                    );
                    conn.send(&request);
                    match conn.try_response(false) {
                        Ok(r) if r.status == 200 => ok.fetch_add(1, Ordering::SeqCst),
                        other => {
                            eprintln!("lost: {other:?}");
                            failed.fetch_add(1, Ordering::SeqCst)
                        }
                    };
                }
            })
        })
        .collect();
    for version in 2..=5 {
        let target = ok.load(Ordering::SeqCst) + 20;
        while ok.load(Ordering::SeqCst) < target && failed.load(Ordering::SeqCst) == 0 {
            std::thread::yield_now();
        }
        add_version(models.path(), version);
        let r = post(&server, "/v2/repository/models/digits/load", "");
        assert_eq!(r.status, 200);
    }
    let target = ok.load(Ordering::SeqCst) + 20;
    while ok.load(Ordering::SeqCst) < target && failed.load(Ordering::SeqCst) == 0 {
        std::thread::yield_now();
    }
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.join().unwrap();
    }
    assert_eq!(failed.load(Ordering::SeqCst), 0);
    assert_eq!(answering_version(&server), "5");
}

/// A key pair of `inferd keygen`'s kind: the public half in `trusted/KID.pem`, the signer.
fn model_signer(root: &Path) -> inferd::signing::Signer {
    let (private_pem, public_pem, kid) = inferd::provision::token_keypair().unwrap();
    std::fs::create_dir_all(root.join("trusted")).unwrap();
    std::fs::write(root.join("trusted").join(format!("{kid}.pem")), public_pem).unwrap();
    let key = root.join(format!("{kid}.key.pem"));
    std::fs::write(&key, private_pem).unwrap();
    inferd::signing::Signer::load(&key).unwrap()
}

#[test]
fn with_require_signed_a_signed_version_loads_and_a_tampered_one_is_refused() {
    let models = tempfile::tempdir().unwrap();
    let keys = tempfile::tempdir().unwrap();
    let signer = model_signer(keys.path());
    add_version(models.path(), 1);
    let sign = |v: u64| {
        let folder = models.path().join(format!("digits/{v}"));
        inferd::signing::sign_folder(&folder, &signer).unwrap();
    };
    sign(1);
    let (dir, trusted) = (models.path().to_path_buf(), keys.path().join("trusted"));
    let server = TestServer::start_with(move |c| {
        c.models.dir = dir;
        c.models.trusted_keys_dir = Some(trusted);
        c.models.require_signed = true;
    });
    assert_eq!(answering_version(&server), "1");

    add_version(models.path(), 2);
    sign(2);
    assert_eq!(
        post(&server, "/v2/repository/models/digits/load", "").status,
        200
    );
    assert_eq!(answering_version(&server), "2");

    add_version(models.path(), 3);
    sign(3);
    let onnx = models.path().join("digits/3/model.onnx");
    let mut bytes = std::fs::read(&onnx).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&onnx, bytes).unwrap();
    let r = post(&server, "/v2/repository/models/digits/load", "");
    assert_eq!((r.status, r.code().as_str()), (409, "load_failed"));
    assert_eq!(answering_version(&server), "2");
    let v3 = entry(&index(&server), "3");
    let reason = v3["reason"].as_str().unwrap();
    assert!(
        reason.contains("model.onnx") && reason.contains("SHA-256"),
        "{reason}"
    );

    add_version(models.path(), 4);
    let r = post(&server, "/v2/repository/models/digits/load", "");
    assert_eq!(r.status, 409, "an unsigned version loaded");
    assert!(
        entry(&index(&server), "4")["reason"]
            .as_str()
            .unwrap()
            .contains("unsigned")
    );
    assert_eq!(answering_version(&server), "2");
}
