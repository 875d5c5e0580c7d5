//! The CLI that edits state: `inferd model inspect`, `inferd model add` (what it copies,
//! what it refuses and leaves behind, whether the request it prints works), and
//! `inferd apikey new` / `client new` with `--config` against a running server.

use crate::support::{TestServer, inferd_command, models_dir};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Runs the real binary; returns (exit success, stdout, stderr).
fn inferd(args: &[&str]) -> (bool, String, String) {
    let out = inferd_command().args(args).output().expect("run inferd");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn path_arg(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

/// Hand-written ONNX protobuf: enough for graphs tract cannot run.
mod pb {
    fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    pub fn bytes(out: &mut Vec<u8>, number: u64, b: &[u8]) {
        varint(out, number << 3 | 2);
        varint(out, b.len() as u64);
        out.extend_from_slice(b);
    }

    pub fn int(out: &mut Vec<u8>, number: u64, v: u64) {
        varint(out, number << 3);
        varint(out, v);
    }

    /// A FP32 tensor value `[batch, 4]`.
    pub fn value(name: &str) -> Vec<u8> {
        let mut shape = Vec::new();
        let (mut batch, mut four) = (Vec::new(), Vec::new());
        bytes(&mut batch, 2, b"batch");
        int(&mut four, 1, 4);
        bytes(&mut shape, 1, &batch);
        bytes(&mut shape, 1, &four);
        let mut tensor_type = Vec::new();
        int(&mut tensor_type, 1, 1);
        bytes(&mut tensor_type, 2, &shape);
        let mut type_proto = Vec::new();
        bytes(&mut type_proto, 1, &tensor_type);
        let mut v = Vec::new();
        bytes(&mut v, 1, name.as_bytes());
        bytes(&mut v, 2, &type_proto);
        v
    }

    pub fn node(name: &str, op_type: &str, inputs: &[&str], output: &str) -> Vec<u8> {
        let mut n = Vec::new();
        for i in inputs {
            bytes(&mut n, 1, i.as_bytes());
        }
        bytes(&mut n, 2, output.as_bytes());
        bytes(&mut n, 3, name.as_bytes());
        bytes(&mut n, 4, op_type.as_bytes());
        n
    }

    /// x -> Relu -> `op_type` (node `node_name`) -> y, opset 13.
    pub fn model_with_op(op_type: &str, node_name: &str) -> Vec<u8> {
        let mut g = Vec::new();
        bytes(&mut g, 1, &node("relu", "Relu", &["x"], "h"));
        bytes(&mut g, 1, &node(node_name, op_type, &["h"], "y"));
        bytes(&mut g, 11, &value("x"));
        bytes(&mut g, 12, &value("y"));
        model(&g)
    }

    /// x + w -> y, where w is an initializer kept in the external file `location`.
    pub fn model_with_external(location: &str) -> Vec<u8> {
        let mut w = Vec::new();
        int(&mut w, 1, 4);
        int(&mut w, 2, 1);
        bytes(&mut w, 8, b"w");
        let mut entry = Vec::new();
        bytes(&mut entry, 1, b"location");
        bytes(&mut entry, 2, location.as_bytes());
        bytes(&mut w, 13, &entry);
        int(&mut w, 14, 1);
        let mut g = Vec::new();
        bytes(&mut g, 1, &node("add", "Add", &["x", "w"], "y"));
        bytes(&mut g, 5, &w);
        bytes(&mut g, 11, &value("x"));
        bytes(&mut g, 12, &value("y"));
        model(&g)
    }

    fn model(graph: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        int(&mut m, 1, 8);
        bytes(&mut m, 7, graph);
        let mut opset = Vec::new();
        int(&mut opset, 2, 13);
        bytes(&mut m, 8, &opset);
        m
    }
}

/// Every path under `dir`, relative, sorted (empty when `dir` does not exist).
fn tree(dir: &Path) -> Vec<PathBuf> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.map(Result::unwrap) {
            out.push(e.path().strip_prefix(root).unwrap().to_path_buf());
            if e.file_type().unwrap().is_dir() {
                walk(root, &e.path(), out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

#[test]
fn inspect_reports_the_bundled_digits_model() {
    let file = models_dir().join("digits/model.onnx");
    let (ok, out, err) = inferd(&["model", "inspect", "--json", path_arg(&file)]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let input = &v["inputs"][0];
    assert_eq!(
        (&input["name"], &input["datatype"], &input["served"]),
        (&"input".into(), &"FP32".into(), &true.into())
    );
    assert_eq!(input["shape"], serde_json::json!([-1, 64]));
    assert!(
        input["dims"][0].is_string(),
        "a symbolic batch axis: {input}"
    );
    assert_eq!(v["outputs"][0]["shape"], serde_json::json!([-1, 10]));
    assert!(v["opsets"][0]["version"].as_i64().unwrap() >= 9);
    assert_eq!(v["bytes"], std::fs::metadata(&file).unwrap().len());
    assert_eq!(
        v["tract"],
        serde_json::json!({"parses": true, "optimises": true, "unsupported": [], "error": null})
    );
    let (ok, text, _) = inferd(&["model", "inspect", path_arg(&file)]);
    assert!(ok && text.contains("loads and optimises"), "{text}");
}

#[test]
fn inspect_names_each_unsupported_operator_and_its_node() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("odd.onnx");
    std::fs::write(&file, pb::model_with_op("NoSuchOp", "mystery_node")).unwrap();
    let (ok, out, err) = inferd(&["model", "inspect", "--json", path_arg(&file)]);
    assert!(!ok, "a model inferd cannot serve exits non-zero");
    assert!(err.contains("NoSuchOp"), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        v["tract"]["unsupported"],
        serde_json::json!([{"node": "mystery_node", "op": "NoSuchOp"}])
    );
    assert_eq!(
        (&v["tract"]["parses"], &v["tract"]["optimises"]),
        (&true.into(), &false.into())
    );
    assert_eq!(v["inputs"][0]["dims"], serde_json::json!(["batch", 4]));
    let (_, text, _) = inferd(&["model", "inspect", path_arg(&file)]);
    assert!(
        text.contains("unsupported operator NoSuchOp at node \"mystery_node\""),
        "{text}"
    );
    // Not ONNX at all: one clear line.
    std::fs::write(&file, b"\xff\xff\xff").unwrap();
    let (ok, _, err) = inferd(&["model", "inspect", path_arg(&file)]);
    assert!(!ok && err.contains("not a valid ONNX model"), "{err}");
}

#[test]
fn add_copies_runs_and_prints_a_request_the_server_accepts() {
    let tmp = tempfile::tempdir().unwrap();
    let models = tmp.path().join("repo");
    let onnx = models_dir().join("digits/model.onnx");
    let (ok, out, err) = inferd(&[
        "model",
        "add",
        path_arg(&onnx),
        "--name",
        "mine",
        "--models",
        path_arg(&models),
    ]);
    assert!(ok, "{err}");
    let version = models.join("mine/1");
    assert_eq!(
        std::fs::read(version.join("model.onnx")).unwrap(),
        std::fs::read(&onnx).unwrap()
    );
    assert_eq!(
        tree(&models),
        ["mine", "mine/1", "mine/1/model.onnx", "mine/1/model.toml"]
            .map(PathBuf::from)
            .to_vec(),
        "nothing else, no staging folder"
    );
    let manifest = std::fs::read_to_string(version.join("model.toml")).unwrap();
    assert!(manifest.contains("name = \"mine\"\nversion = \"1\"\ntask = \"tensor\""));
    // Serve the repository and send exactly what `add` printed.
    let server = TestServer::start_with(|c| {
        c.models.dir = models.clone();
        c.models.enabled = vec!["mine".into()];
    });
    let body = out
        .split("-d '")
        .nth(1)
        .and_then(|rest| rest.split("' https://").next())
        .unwrap_or_else(|| panic!("a curl line: {out}"));
    let r = server.post_json("/v2/models/mine/infer", body);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["outputs"][0]["shape"], serde_json::json!([1, 10]));
    let printed: serde_json::Value =
        serde_json::from_str(&out[out.rfind("):\n{").unwrap() + 3..]).unwrap();
    let meta = server.request("GET", "/v2/models/mine", &[("X-API-Key", &server.key)], b"");
    assert_eq!(
        printed,
        meta.json(),
        "the metadata add prints is the server's"
    );
}

#[test]
fn add_with_config_writes_into_its_models_dir_and_says_what_keeps_it_unserved() {
    let (dir, _, _) = crate::support::provisioned();
    let config = dir.path().join("state/inferd.toml");
    let repo = dir.path().join("repo");
    let out = inferd_command()
        .args([
            "model",
            "add",
            path_arg(&models_dir().join("digits/model.onnx")),
        ])
        .args(["--name", "extra", "--config", path_arg(&config)])
        .env("INFERD_MODELS_DIR", &repo)
        .env("INFERD_MODELS_ENABLED", "digits")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(repo.join("extra/1/model.toml").is_file());
    assert!(
        text.contains("[models] enabled does not list \"extra\""),
        "{text}"
    );
    assert!(
        text.contains("--cacert ") && text.contains("/tls/ca.pem"),
        "{text}"
    );
}

#[test]
fn add_with_a_tokenizer_makes_a_text_classifier() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    let sentiment = models_dir().join("sentiment");
    let onnx = sentiment.join("model.onnx");
    let tokenizer = sentiment.join("tokenizer.json");
    let (ok, out, err) = inferd(&[
        "model",
        "add",
        path_arg(&onnx),
        "--name",
        "feel",
        "--models",
        path_arg(&repo),
        "--tokenizer",
        path_arg(&tokenizer),
        "--labels",
        "neg,pos",
    ]);
    assert!(ok, "{err}");
    assert!(
        out.contains("\"datatype\":\"BYTES\",\"name\":\"text\""),
        "{out}"
    );
    let manifest = std::fs::read_to_string(repo.join("feel/1/model.toml")).unwrap();
    assert!(
        manifest.contains("task = \"text-classification\""),
        "{manifest}"
    );
    assert!(
        manifest.contains("labels = [\"neg\", \"pos\"]"),
        "{manifest}"
    );
    assert_eq!(
        std::fs::read(repo.join("feel/1/tokenizer.json")).unwrap(),
        std::fs::read(&tokenizer).unwrap()
    );
    // Three labels for a two-column output: refused, nothing written.
    let (ok, _, err) = inferd(&[
        "model",
        "add",
        path_arg(&onnx),
        "--name",
        "feel",
        "--models",
        path_arg(&repo),
        "--tokenizer",
        path_arg(&tokenizer),
        "--labels",
        "a,b,c",
    ]);
    assert!(!ok && err.contains("2 columns but 3 labels"), "{err}");
    assert!(!repo.join("feel/2").exists());
}

#[test]
fn add_refuses_what_tract_cannot_run_and_leaves_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("odd.onnx");
    std::fs::write(&file, pb::model_with_op("NoSuchOp", "mystery_node")).unwrap();
    // Into a repository that does not exist yet: not even its folder stays.
    let fresh = tmp.path().join("fresh");
    let (ok, _, err) = inferd(&[
        "model",
        "add",
        path_arg(&file),
        "--name",
        "odd",
        "--models",
        path_arg(&fresh),
    ]);
    assert!(!ok);
    assert!(
        err.contains("NoSuchOp"),
        "the reason names the operator: {err}"
    );
    assert!(!fresh.exists(), "{:?}", tree(&fresh));
    // Into one that holds a model: unchanged.
    let repo = tmp.path().join("repo");
    let digits = models_dir().join("digits/model.onnx");
    let add = |file: &Path, extra: &[&str]| {
        let mut args = vec!["model", "add", path_arg(file), "--name", "m"];
        args.extend_from_slice(&["--models", path_arg(&repo)]);
        args.extend_from_slice(extra);
        inferd(&args)
    };
    assert!(add(&digits, &[]).0);
    let before = tree(&repo);
    let (ok, _, err) = add(&file, &[]);
    assert!(!ok && err.contains("NoSuchOp"), "{err}");
    assert_eq!(tree(&repo), before);
    // A model whose inputs inferd cannot take (no shape), or a text model without labels.
    let (ok, _, err) = add(&digits, &["--tokenizer", "/nonexistent.json"]);
    assert!(!ok && err.contains("--labels"), "{err}");
    assert_eq!(tree(&repo), before);
}

#[test]
fn add_never_overwrites_a_version_and_numbers_the_next() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    let digits = models_dir().join("digits/model.onnx");
    let add = |extra: &[&str]| {
        let mut args = vec!["model", "add", path_arg(&digits), "--name", "d"];
        args.extend_from_slice(&["--models", path_arg(&repo)]);
        args.extend_from_slice(extra);
        inferd(&args)
    };
    assert!(add(&["--version", "3"]).0);
    let toml = std::fs::read(repo.join("d/3/model.toml")).unwrap();
    let (ok, _, err) = add(&["--version", "3"]);
    assert!(!ok && err.contains("already exists"), "{err}");
    assert_eq!(std::fs::read(repo.join("d/3/model.toml")).unwrap(), toml);
    let (ok, out, err) = add(&[]);
    assert!(ok, "{err}");
    assert!(out.contains("added d version 4"), "{out}");
    let (ok, _, err) = add(&["--version", "0"]);
    assert!(!ok, "{err}");
}

#[test]
fn external_data_outside_the_model_folder_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let folder = tmp.path().join("m");
    std::fs::create_dir(&folder).unwrap();
    std::fs::write(tmp.path().join("secret.bin"), [0u8; 16]).unwrap();
    for location in ["../secret.bin", path_arg(&tmp.path().join("secret.bin"))] {
        let file = folder.join("model.onnx");
        std::fs::write(&file, pb::model_with_external(location)).unwrap();
        let (ok, out, err) = inferd(&["model", "inspect", "--json", path_arg(&file)]);
        assert!(!ok);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let reason = v["tract"]["error"].as_str().unwrap();
        assert!(
            reason.contains("external data") && reason.contains("tensor \"w\""),
            "{reason} / {err}"
        );
        assert_eq!(v["tract"]["parses"], false, "refused before tract reads it");
        let repo = tmp.path().join("repo");
        let (ok, _, err) = inferd(&[
            "model",
            "add",
            path_arg(&file),
            "--name",
            "m",
            "--models",
            path_arg(&repo),
        ]);
        assert!(!ok && err.contains("external"), "{err}");
        assert!(!repo.exists());
    }
}

#[test]
fn a_served_model_whose_external_data_escapes_its_folder_stops_the_start() {
    let tmp = tempfile::tempdir().unwrap();
    let served = tmp.path().join("models");
    std::fs::create_dir_all(served.join("ext")).unwrap();
    std::fs::write(tmp.path().join("secret.bin"), [0u8; 16]).unwrap();
    std::fs::write(
        served.join("ext/model.onnx"),
        pb::model_with_external("../../secret.bin"),
    )
    .unwrap();
    std::fs::write(
        served.join("ext/model.toml"),
        "name = \"ext\"\nversion = \"1\"\ntask = \"tensor\"\n\
         [[inputs]]\nname = \"x\"\ndatatype = \"FP32\"\nshape = [-1, 4]\n\
         [[outputs]]\nname = \"y\"\ndatatype = \"FP32\"\nshape = [-1, 4]\n",
    )
    .unwrap();
    let (_dir, mut config, _) = crate::support::provisioned();
    config.models.dir = served;
    config.models.enabled = vec!["ext".into()];
    let e = match inferd::start(&config) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("a model reading outside its folder was served"),
    };
    assert!(
        e.contains("external data \"../../secret.bin\" refused") && e.contains("`..`"),
        "{e}"
    );
}

/// Polls `ok` until it holds or `limit` passes (the keys file is re-read at most once a
/// second, on use).
fn within(limit: Duration, mut ok: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if ok() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn secret_after(out: &str, label: &str) -> String {
    out.lines()
        .find_map(|l| l.split_once(label).map(|(_, s)| s.trim().to_owned()))
        .unwrap_or_else(|| panic!("{label} in {out}"))
}

#[test]
fn apikey_new_with_config_is_accepted_by_the_running_server_without_restart() {
    let server = TestServer::start();
    let state = server.dir.path().join("state");
    let config = state.join("inferd.toml");
    let keys = state.join("api_keys.toml");
    let before = std::fs::read_to_string(&keys).unwrap();
    let (ok, out, err) = inferd(&[
        "apikey",
        "new",
        "--id",
        "app",
        "--scope",
        "predict",
        "--config",
        path_arg(&config),
    ]);
    assert!(ok, "{err}");
    let key = secret_after(&out, "stored only as a hash):");
    let after = std::fs::read_to_string(&keys).unwrap();
    assert!(
        after.starts_with(&before),
        "existing entries and comments kept"
    );
    assert!(!after.contains(&key), "the key itself is never stored");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&keys).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let infer = || {
        server
            .request(
                "POST",
                "/v2/models/digits/infer",
                &[("X-API-Key", &key), ("Content-Type", "application/json")],
                crate::support::DIGIT.as_bytes(),
            )
            .status
    };
    assert!(
        within(Duration::from_secs(10), || infer() == 200),
        "the new key never worked: {}",
        infer()
    );
    // The same id again: refused, file untouched.
    let (ok, _, err) = inferd(&[
        "apikey",
        "new",
        "--id",
        "app",
        "--scope",
        "predict",
        "--config",
        path_arg(&config),
    ]);
    assert!(!ok && err.contains("already in use"), "{err}");
    assert_eq!(std::fs::read_to_string(&keys).unwrap(), after);
}

#[test]
fn client_new_with_config_adds_a_client_that_gets_a_token() {
    let server = TestServer::start();
    let config = server.dir.path().join("state/inferd.toml");
    let (ok, out, err) = inferd(&[
        "client",
        "new",
        "--id",
        "cam-7",
        "--scope",
        "predict",
        "--config",
        path_arg(&config),
    ]);
    assert!(ok, "{err}");
    let secret = secret_after(&out, "stored only as a hash):");
    let form = format!("grant_type=client_credentials&client_id=cam-7&client_secret={secret}");
    let token = || {
        server.request(
            "POST",
            "/token",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            form.as_bytes(),
        )
    };
    assert!(
        within(Duration::from_secs(10), || token().status == 200),
        "no token for the new client: {:?}",
        token()
    );
    let (ok, _, err) = inferd(&[
        "client",
        "new",
        "--id",
        "cam-7",
        "--scope",
        "predict",
        "--config",
        path_arg(&config),
    ]);
    assert!(!ok && err.contains("already in use"), "{err}");
    // A device that issues no tokens has no clients file: a clear error, nothing written.
    let text = std::fs::read_to_string(&config).unwrap();
    let no_issuing: String = text
        .lines()
        .filter(|l| !l.starts_with("signing_key") && !l.starts_with("clients_file"))
        .map(|l| format!("{l}\n"))
        .collect();
    let other = server.dir.path().join("state/no-token.toml");
    std::fs::write(&other, no_issuing).unwrap();
    let (ok, _, err) = inferd(&[
        "client",
        "new",
        "--id",
        "x",
        "--scope",
        "predict",
        "--config",
        path_arg(&other),
    ]);
    assert!(!ok && err.contains("no [auth] clients_file"), "{err}");
}
