//! tract against onnxruntime: the committed cases (exported by scripts/build_models.py
//! with onnxruntime's outputs) must come out the same from our runtime.

use crate::support::{argmax, models_dir};
use inferd::model::ModelRepository;
use inferd::model::pool::Pool;
use inferd::model::tensor::{Data, Tensor};
use serde_json::Value;

/// Largest absolute difference allowed between tract's and onnxruntime's probabilities.
/// Both dequantise the same int8 weights to fp32; what differs is summation order.
const TOLERANCE: f32 = 2e-3;

fn repository() -> ModelRepository {
    ModelRepository::load(
        &models_dir(),
        &[],
        None,
        std::sync::Arc::new(Pool::new(2, 64).unwrap()),
        inferd::metrics::Metrics::new(),
    )
    .expect("bundled models load")
}

fn cases(model: &str) -> Vec<Value> {
    let path = models_dir().join(model).join("cases.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

/// tract against onnxruntime for the int8-activation text encoder (see the case loop).
const TEXT_TOLERANCE: f32 = 1e-2;

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn sentiment_matches_onnxruntime_on_committed_cases() {
    let repo = repository();
    let model = repo.get("sentiment", None).unwrap();
    let cases = cases("sentiment");
    assert!(cases.len() >= 20);
    let texts: Vec<String> = cases
        .iter()
        .map(|c| c["text"].as_str().unwrap().to_owned())
        .collect();
    let results = repo
        .classify(&model, model.encode_texts(&texts).unwrap(), 0, None)
        .unwrap();
    let mut worst = 0f32;
    for (case, got) in cases.iter().zip(&results) {
        let want = floats(&case["probabilities"]);
        let diff = max_diff(&got.probabilities, &want);
        worst = worst.max(diff);
        // The encoder quantises activations to int8 per token at run time; a value on a
        // rounding boundary can land one step apart in tract and onnxruntime, which moves a
        // probability by a few thousandths. The label must agree all the same.
        assert_eq!(
            argmax(got.probabilities.iter().map(|&p| f64::from(p))),
            argmax(want.iter().map(|&p| f64::from(p))),
            "{}",
            case["text"]
        );
        assert!(
            diff <= TEXT_TOLERANCE,
            "{}: tract {:?} vs onnxruntime {want:?}",
            case["text"],
            got.probabilities
        );
    }
    eprintln!("sentiment: worst |tract - onnxruntime| = {worst:e}");
}

#[test]
fn tokenizer_matches_python_ids() {
    let repo = repository();
    let model = repo.get("sentiment", None).unwrap();
    let spec = model.text_limits().unwrap().clone();
    let pre = inferd::model::text::Preprocessor::load(
        &models_dir().join("sentiment/tokenizer.json"),
        spec,
    )
    .unwrap();
    for case in cases("sentiment") {
        let want: Vec<i64> = case["input_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_i64().unwrap())
            .collect();
        let got = pre.encode(case["text"].as_str().unwrap()).unwrap();
        assert_eq!(&got.ids[..got.tokens], &want[..], "{}", case["text"]);
        assert!(got.ids[got.tokens..].iter().all(|&i| i == 0));
        assert_eq!(got.mask.iter().sum::<i64>() as usize, got.tokens);
    }
}

#[test]
fn digits_matches_onnxruntime_and_labels() {
    let repo = repository();
    let model = repo.get("digits", None).unwrap();
    let cases = cases("digits");
    let data: Vec<f32> = cases.iter().flat_map(|c| floats(&c["input"])).collect();
    let input = Tensor {
        name: "input".into(),
        shape: vec![cases.len(), 64],
        data: Data::F32(data),
    };
    let out = repo
        .infer(&model, model.check(vec![input]).unwrap(), 0, None)
        .unwrap();
    let Data::F32(probs) = &out[0].data else {
        panic!("FP32 output")
    };
    assert_eq!(out[0].shape, vec![cases.len(), 10]);
    let mut correct = 0;
    for (i, case) in cases.iter().enumerate() {
        let row = &probs[i * 10..(i + 1) * 10];
        let diff = max_diff(row, &floats(&case["probabilities"]));
        assert!(diff <= TOLERANCE, "case {i}: diff {diff}");
        let best = argmax(row.iter().map(|&p| f64::from(p)));
        correct += usize::from(best as i64 == case["label"].as_i64().unwrap());
    }
    assert!(
        correct >= cases.len() - 1,
        "{correct}/{} held-out digits right",
        cases.len()
    );
}

/// onnxruntime's held-out accuracy of the shipped int8 model (models/sentiment/README.md).
const ONNXRUNTIME_HELDOUT_ACCURACY: f64 = 0.8080;

#[test]
fn sentiment_heldout_accuracy_in_tract_is_within_a_point_of_onnxruntime() {
    let repo = std::sync::Arc::new(repository());
    let model = repo.get("sentiment", None).unwrap();
    let text = std::fs::read_to_string(models_dir().join("sentiment/heldout.jsonl")).unwrap();
    let rows: Vec<(String, usize)> = text
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (
                v["text"].as_str().unwrap().to_owned(),
                v["label"].as_u64().unwrap() as usize,
            )
        })
        .collect();
    // Two halves on the pool's two workers.
    let (a, b) = rows.split_at(rows.len() / 2);
    let run = |part: &[(String, usize)]| {
        let (repo, model) = (repo.clone(), model.clone());
        let part = part.to_vec();
        std::thread::spawn(move || {
            let texts: Vec<String> = part.iter().map(|(t, _)| t.clone()).collect();
            let encoded = model.encode_texts(&texts).unwrap();
            let got = repo.classify(&model, encoded, 0, None).unwrap();
            got.iter()
                .zip(&part)
                .filter(|(c, (_, label))| c.label == ["negative", "positive"][*label])
                .count()
        })
    };
    let (ha, hb) = (run(a), run(b));
    let correct = ha.join().unwrap() + hb.join().unwrap();
    let accuracy = correct as f64 / rows.len() as f64;
    eprintln!(
        "sentiment held-out accuracy in tract: {accuracy:.4} ({correct}/{})",
        rows.len()
    );
    assert!(rows.len() > 3000);
    assert!(
        (accuracy - ONNXRUNTIME_HELDOUT_ACCURACY).abs() <= 0.01,
        "tract {accuracy:.4} vs onnxruntime {ONNXRUNTIME_HELDOUT_ACCURACY}"
    );
}

/// Each bundled model names the matrix kernels tract chose for it (what the load log line
/// reports): the sentiment encoder's int8 products run on an i32-accumulating kernel, and
/// the digits model's on an f32 one, whatever the CPU.
#[test]
fn models_report_their_matrix_kernels() {
    let repo = repository();
    let kernels = |name: &str| repo.get(name, None).unwrap().kernels();
    let sentiment = kernels("sentiment");
    assert!(
        sentiment.iter().any(|(k, n)| k.contains("i32") && *n > 0),
        "{sentiment:?}"
    );
    let digits = kernels("digits");
    assert!(
        !digits.is_empty() && digits.iter().all(|(k, _)| !k.is_empty()),
        "{digits:?}"
    );
}
