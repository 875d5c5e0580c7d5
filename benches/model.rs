//! Model costs through the API the server uses: tokenisation with the sentiment model's
//! tokenizer, and classification at 16/32/64/128 tokens and one digits inference, both queued
//! on the inference pool like a request (the pool's round trip is measured on its own).

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use inferd::metrics::Metrics;
use inferd::model::pool::{How, Pool};
use inferd::model::tensor::{Data, Tensor};
use inferd::model::text::Preprocessor;
use inferd::model::{Model, ModelRepository};
use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Sequence lengths timed, special tokens ([CLS], [SEP]) included.
const LENGTHS: [usize; 4] = [16, 32, 64, 128];

/// Words the texts are made of: a product review, as `/predict` gets them.
const REVIEW: &str = "I bought this kettle for the office after the old one finally gave up, \
    and after three months of daily use I can say it was worth every penny. It boils a full \
    litre in under three minutes, the lid opens with one hand, and the light tells you when \
    the water is ready. The handle stays cool, which my colleagues appreciate. My only \
    complaint is that the cord is rather short, so it has to sit close to the socket, and the \
    filter is fiddly to clean. Still, compared with the cheap plastic models we had before, \
    this one feels solid, looks good on the counter and has not leaked once. I would happily \
    recommend it to anyone who drinks as much tea as we do, and I will buy another for home \
    when the sale comes back around next spring.";

fn models_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models")
}

/// The bundled models, as the server loads them (read-only), on one worker with the
/// default queue of 2: one inference at a time, like a single-core board.
fn repository() -> (ModelRepository, Arc<Pool>) {
    let pool = Arc::new(Pool::new(1, 2).expect("worker thread"));
    // Loading runs each model once (its warm-up).
    let repo = ModelRepository::load(&models_dir(), &[], None, pool.clone(), Metrics::new())
        .expect("bundled models load");
    (repo, pool)
}

fn preprocessor(model: &Model) -> Preprocessor {
    let spec = model.text_limits().expect("a text model").clone();
    let path = models_dir().join(model.name()).join(&spec.tokenizer);
    Preprocessor::load(&path, spec).expect("tokenizer loads")
}

/// A prefix of the review, word by word (skipping words that would overshoot), that
/// tokenises to exactly `n` tokens.
fn text_of(pre: &Preprocessor, n: usize) -> String {
    let mut text = String::new();
    for word in REVIEW.split_whitespace().cycle().take(4 * n) {
        let candidate = if text.is_empty() {
            word.to_owned()
        } else {
            format!("{text} {word}")
        };
        let tokens = pre.encode(&candidate).expect("encodes").tokens;
        if tokens <= n {
            text = candidate;
        }
        if tokens == n {
            return text;
        }
    }
    panic!("no prefix of the review has exactly {n} tokens");
}

fn bench(c: &mut Criterion) {
    let (repo, pool) = repository();
    let sentiment = repo.get("sentiment", None).expect("sentiment model");
    let digits = repo.get("digits", None).expect("digits model");
    let pre = preprocessor(&sentiment);
    let texts: Vec<(usize, String)> = LENGTHS.iter().map(|&n| (n, text_of(&pre, n))).collect();

    let mut group = c.benchmark_group("model/tokenise");
    for (n, text) in &texts {
        group.throughput(Throughput::Elements(*n as u64));
        group.bench_function(format!("{n}_tokens"), |b| {
            b.iter(|| pre.encode(black_box(text)).map(|e| e.tokens))
        });
    }
    group.finish();

    // Milliseconds per call: flat sampling, 20 samples over 5 s per length.
    let mut group = c.benchmark_group("model/classify");
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(20)
        .measurement_time(Duration::from_secs(5));
    for (n, text) in &texts {
        group.throughput(Throughput::Elements(*n as u64));
        group.bench_function(format!("sentiment_{n}_tokens"), |b| {
            b.iter(|| {
                let texts = sentiment.encode_texts(&[black_box(text.clone())]);
                texts
                    .and_then(|t| repo.classify(&sentiment, t, 0, None))
                    .map(|c| c.len())
            })
        });
    }
    group.finish();

    let pixels: Vec<f32> = (0..64).map(|i| (i * 7 % 17) as f32).collect();
    let input = Tensor {
        name: "input".into(),
        shape: vec![1, 64],
        data: Data::F32(pixels),
    };
    let mut group = c.benchmark_group("model/infer");
    group.bench_function("digits_1x64", |b| {
        b.iter(|| {
            digits
                .check(vec![black_box(input.clone())])
                .and_then(|checked| repo.infer(&digits, checked, 0, None))
                .is_ok()
        })
    });
    group.finish();

    // The hop to a worker and back (what a model that costs more than `RUN_HERE_BELOW` pays),
    // and the same job run on the caller's thread (what the digits model pays).
    c.bench_function("model/pool_round_trip", |b| {
        b.iter(|| pool.run(0, How::default(), || black_box(1)).is_ok())
    });
    let here = How {
        here: true,
        wait: None,
    };
    c.bench_function("model/pool_run_here", |b| {
        b.iter(|| pool.run(0, here, || black_box(1)).is_ok())
    });
}

criterion_group! {
    name = benches;
    // 1 s warm-up and 3 s of samples per bench (the classify group: 5 s, flat, 20 samples):
    // the whole run stays within a few minutes on a busy 2-core machine.
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
