//! The bundled models over real HTTPS: `/predict` and Open Inference Protocol inference.

use crate::support::{TestServer, argmax, models_dir};
use serde_json::{Value, json};

fn both_models() -> TestServer {
    TestServer::start_with(|c| c.models.enabled = vec![])
}

#[test]
fn predict_labels_clear_sentences() {
    let server = both_models();
    for (text, want) in [
        (
            "I love this, it is wonderful and works perfectly!",
            "positive",
        ),
        (
            "This is terrible. I hate it, a complete waste of money.",
            "negative",
        ),
    ] {
        let r = server.post_json("/predict", &json!({ "text": text }).to_string());
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let v = r.json();
        assert_eq!(v["prediction"], want, "{text}: {v}");
        assert!(v["score"].as_f64().unwrap() > 0.8, "{v}");
        let sum: f64 = v["scores"]
            .as_object()
            .unwrap()
            .values()
            .map(|p| p.as_f64().unwrap())
            .sum();
        assert!((sum - 1.0).abs() < 1e-3, "{v}");
        assert_eq!(
            (v["model"].as_str(), v["model_version"].as_str()),
            (Some("sentiment"), Some("1"))
        );
    }
}

#[test]
fn predict_refuses_empty_long_and_malformed_text() {
    let server = both_models();
    let r = server.post_json("/predict", r#"{"text": "   "}"#);
    assert_eq!((r.status, r.code().as_str()), (422, "empty_text"));
    let long = "word ".repeat(200);
    let r = server.post_json("/predict", &json!({ "text": long }).to_string());
    assert_eq!((r.status, r.code().as_str()), (422, "text_too_long"));
    let r = server.post_json("/predict", &json!({ "text": "x".repeat(5000) }).to_string());
    assert_eq!((r.status, r.code().as_str()), (422, "text_too_long"));
    let r = server.post_json("/predict", r#"{"text": 5}"#);
    assert_eq!(r.status, 422);
    let r = server.post_json("/predict", r#"{"text": "ok""#);
    assert_eq!((r.status, r.code().as_str()), (400, "malformed_json"));
    let r = server.post_json("/predict", r#"{"text": "fine", "model": "nope"}"#);
    assert_eq!(r.status, 404);
}

fn digits_cases() -> Vec<Value> {
    serde_json::from_str(&std::fs::read_to_string(models_dir().join("digits/cases.json")).unwrap())
        .unwrap()
}

#[test]
fn oip_infer_classifies_held_out_digits() {
    let server = TestServer::start();
    let cases = digits_cases();
    for case in cases.iter().take(6) {
        let body = json!({ "id": "t1", "inputs": [{ "name": "input", "shape": [1, 64], "datatype": "FP32", "data": case["input"] }] });
        let r = server.post_json("/v2/models/digits/infer", &body.to_string());
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let v = r.json();
        assert_eq!(
            (v["model_name"].as_str(), v["id"].as_str()),
            (Some("digits"), Some("t1"))
        );
        let out = &v["outputs"][0];
        assert_eq!(
            (out["name"].as_str(), out["datatype"].as_str()),
            (Some("probabilities"), Some("FP32"))
        );
        assert_eq!(out["shape"], json!([1, 10]));
        let probs: Vec<f64> = out["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_f64().unwrap())
            .collect();
        let best = argmax(probs.iter().copied());
        assert_eq!(best as i64, case["label"].as_i64().unwrap());
    }
    // Versioned path, batch of several, nested data.
    let rows: Vec<Value> = cases.iter().take(4).map(|c| c["input"].clone()).collect();
    let body = json!({ "inputs": [{ "name": "input", "shape": [4, 64], "datatype": "FP32", "data": rows }] });
    let r = server.post_json("/v2/models/digits/versions/1/infer", &body.to_string());
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["outputs"][0]["shape"], json!([4, 10]));
}

#[test]
fn oip_binary_tensor_extension_round_trips() {
    let server = TestServer::start();
    let case = &digits_cases()[0];
    let mut binary = Vec::new();
    for x in case["input"].as_array().unwrap() {
        binary.extend_from_slice(&(x.as_f64().unwrap() as f32).to_le_bytes());
    }
    let header = json!({
        "inputs": [{ "name": "input", "shape": [1, 64], "datatype": "FP32", "parameters": { "binary_data_size": 256 } }],
        "outputs": [{ "name": "probabilities", "parameters": { "binary_data": true } }],
    })
    .to_string();
    let mut body = header.clone().into_bytes();
    body.extend_from_slice(&binary);
    let len = header.len().to_string();
    let r = server.request(
        "POST",
        "/v2/models/digits/infer",
        &[
            ("X-API-Key", &server.key),
            ("Inference-Header-Content-Length", &len),
            ("Content-Type", "application/octet-stream"),
        ],
        &body,
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let n: usize = r
        .header("inference-header-content-length")
        .unwrap()
        .parse()
        .unwrap();
    let head: Value = serde_json::from_slice(&r.body[..n]).unwrap();
    assert_eq!(head["outputs"][0]["parameters"]["binary_data_size"], 40);
    let probs: Vec<f32> = r.body[n..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let best = argmax(probs.iter().map(|&p| f64::from(p)));
    assert_eq!(best as i64, case["label"].as_i64().unwrap());
}

#[test]
fn oip_text_model_takes_bytes() {
    let server = both_models();
    let body = json!({ "inputs": [{ "name": "text", "shape": [2], "datatype": "BYTES",
        "data": ["What a great day, I am so happy!", "Awful service, I am furious."] }] });
    let r = server.post_json("/v2/models/sentiment/infer", &body.to_string());
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let v = r.json();
    let label = v["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == "label")
        .unwrap();
    assert_eq!(label["data"], json!(["positive", "negative"]));
    let meta = server
        .request(
            "GET",
            "/v2/models/sentiment",
            &[("X-API-Key", &server.key)],
            b"",
        )
        .json();
    assert_eq!(meta["inputs"][0]["datatype"], "BYTES");
}

#[test]
fn oip_bad_inputs_get_specific_statuses() {
    let server = TestServer::start();
    let infer = |inputs: Value| {
        server.post_json(
            "/v2/models/digits/infer",
            &json!({ "inputs": inputs }).to_string(),
        )
    };
    let data64: Vec<f32> = vec![1.0; 64];
    let r = infer(
        json!([{ "name": "input", "shape": [1, 64], "datatype": "INT64", "data": vec![1; 64] }]),
    );
    assert_eq!((r.status, r.code().as_str()), (422, "wrong_datatype"));
    let r = infer(
        json!([{ "name": "input", "shape": [1, 32], "datatype": "FP32", "data": vec![1.0; 32] }]),
    );
    assert_eq!((r.status, r.code().as_str()), (422, "wrong_shape"));
    let r = infer(
        json!([{ "name": "input", "shape": [1, 64], "datatype": "FP32", "data": vec![1.0; 63] }]),
    );
    assert_eq!((r.status, r.code().as_str()), (400, "shape_mismatch"));
    let r = infer(
        json!([{ "name": "input", "shape": [1000000000, 1000000000, 64], "datatype": "FP32", "data": data64 }]),
    );
    assert_eq!((r.status, r.code().as_str()), (400, "shape_mismatch"));
    let r = infer(
        json!([{ "name": "input", "shape": [65, 64], "datatype": "FP32", "data": vec![1.0; 65 * 64] }]),
    );
    assert_eq!((r.status, r.code().as_str()), (422, "wrong_shape"));
    let mut inf = data64.iter().map(|x| json!(x)).collect::<Vec<_>>();
    inf[3] = json!(1e39);
    let r = infer(json!([{ "name": "input", "shape": [1, 64], "datatype": "FP32", "data": inf }]));
    assert_eq!((r.status, r.code().as_str()), (422, "non_finite"));
    let r =
        infer(json!([{ "name": "other", "shape": [1, 64], "datatype": "FP32", "data": data64 }]));
    assert_eq!((r.status, r.code().as_str()), (422, "unknown_input"));
    let r = infer(json!([]));
    assert_eq!((r.status, r.code().as_str()), (422, "missing_input"));
    let r = server.post_json("/v2/models/digits/infer", "{\"inputs\": [");
    assert_eq!((r.status, r.code().as_str()), (400, "malformed_json"));
    let r = server.post_json("/v2/models/nope/infer", "{}");
    assert_eq!((r.status, r.code().as_str()), (404, "not_found"));
    let r = server.post_json("/v2/models/digits/versions/9/infer", "{}");
    assert_eq!(r.status, 404);
    // NaN can only arrive in binary.
    let header = r#"{"inputs":[{"name":"input","shape":[1,64],"datatype":"FP32","parameters":{"binary_data_size":256}}]}"#;
    let mut body = header.as_bytes().to_vec();
    for i in 0..64 {
        body.extend_from_slice(&(if i == 5 { f32::NAN } else { 1.0 }).to_le_bytes());
    }
    let len = header.len().to_string();
    let r = server.request(
        "POST",
        "/v2/models/digits/infer",
        &[
            ("X-API-Key", &server.key),
            ("Inference-Header-Content-Length", &len),
        ],
        &body,
    );
    assert_eq!((r.status, r.code().as_str()), (422, "non_finite"));
}

#[test]
fn model_metadata_and_readiness() {
    let server = TestServer::start();
    let r = server.request(
        "GET",
        "/v2/models/digits",
        &[("X-API-Key", &server.key)],
        b"",
    );
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["name"], "digits");
    assert_eq!(v["versions"], json!(["1"]));
    assert_eq!(
        v["inputs"][0],
        json!({ "name": "input", "datatype": "FP32", "shape": [-1, 64] })
    );
    let r = server.request(
        "GET",
        "/v2/models/digits/versions/1/ready",
        &[("X-API-Key", &server.key)],
        b"",
    );
    assert_eq!(r.status, 200);
    let r = server.request("GET", "/v2/models/digits/ready", &[], b"");
    assert_eq!(r.status, 401);
}
