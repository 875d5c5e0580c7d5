//! The model repository: manifests and ONNX graphs under `models.dir`, loaded and optimised
//! once at start, and the two things a request can ask of a model (classify text, infer on
//! tensors), both run on the bounded inference pool.

pub mod add;
pub mod files;
mod folders;
pub mod inspect;
pub mod manifest;
pub mod onnx;
pub mod pool;
mod repository;
pub mod stats;
// Without the `inference` feature, stand-ins with the same API that fail every model load.
#[cfg_attr(not(feature = "inference"), path = "runtime_off.rs")]
mod runtime;
pub mod tensor;
#[cfg_attr(not(feature = "inference"), path = "text_off.rs")]
pub mod text;

use manifest::{Manifest, Task, TextSpec};
use runtime::{Dim, Graph, Plan};
use serde::Serialize;
use stats::Stats;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tensor::{Data, DataType, InputCheck, Tensor};
use text::Preprocessor;

pub use repository::{IndexEntry, ModelRepository, State};

/// Why a model could not be found, loaded or run, or why an input was refused.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// No model by that name is loaded.
    #[error("unknown model {0:?}")]
    UnknownModel(String),
    /// The model exists but not in that version.
    #[error("model {model:?} has no version {version:?}")]
    UnknownVersion { model: String, version: String },
    /// The request contradicts itself (data length vs shape, binary framing): 400.
    #[error("{message}")]
    Invalid { code: &'static str, message: String },
    /// A well-formed input this model cannot take (datatype, shape, value, text): 422.
    #[error("{message}")]
    Input { code: &'static str, message: String },
    /// The request could not start in time (the queue, or the caller's half of it, is
    /// full, or the wait ran out): retry in `retry_after` seconds, as the pool estimates.
    #[error("inference queue full, retry in {retry_after} s")]
    Busy { retry_after: u32 },
    /// The runtime failed on an input that passed validation.
    #[error("inference failed: {0}")]
    Inference(String),
    /// A model file could not be read, parsed or optimised.
    #[error("model {path}: {reason}")]
    Load { path: String, reason: String },
    /// A `model.toml` is missing or wrong.
    #[error("manifest {path}: {reason}")]
    Manifest { path: String, reason: String },
    /// A version folder's signature is missing, not by a trusted key, or does not match
    /// its files (`[models] require_signed`); the message names the file.
    #[error("signature check failed: {0}")]
    Signature(String),
    /// A `tokenizer.json` could not be loaded.
    #[error("tokenizer {path}: {reason}")]
    Tokenizer { path: String, reason: String },
}

impl ModelError {
    pub(crate) fn input(code: &'static str, message: String) -> Self {
        ModelError::Input { code, message }
    }

    pub(crate) fn invalid(code: &'static str, message: String) -> Self {
        ModelError::Invalid { code, message }
    }
}

/// The answer of a text classifier for one text.
#[derive(Debug, Clone, Serialize)]
pub struct Classification {
    pub label: String,
    pub score: f32,
    pub scores: BTreeMap<String, f32>,
    #[serde(skip)]
    pub probabilities: Vec<f32>,
}

/// Token ids padded to a bucket, with their attention mask: what text preprocessing hands the
/// runtime (one definition for `text.rs` and, without the `inference` feature, `text_off.rs`).
#[derive(Debug, Clone, PartialEq)]
pub struct Encoded {
    pub ids: Vec<i64>,
    pub mask: Vec<i64>,
    /// Tokens before padding (with special tokens).
    pub tokens: usize,
}

enum Runner {
    /// One plan per length bucket, ascending; inputs pinned to `[1, bucket]`.
    Text {
        pre: Box<Preprocessor>,
        plans: Vec<(usize, Plan)>,
    },
    /// One plan with a symbolic batch axis.
    Tensor { plan: Plan },
}

/// A loaded model version: its manifest, its runnable plans and its statistics.
pub struct Model {
    pub manifest: Manifest,
    /// The version's number (its folder's name, or the single-folder layout's version).
    pub version: u64,
    pub stats: Stats,
    graph_outputs: Vec<String>,
    graph_inputs: Vec<String>,
    runner: Runner,
    /// Mean run time per batch item in ns (exponentially weighted; 0 until measured).
    item_ns: AtomicU64,
}

/// The manifest must describe the graph exactly, in graph order.
fn check_graph(graph: &Graph, manifest: &Manifest) -> Result<(), String> {
    let declared: Vec<&str> = manifest.inputs.iter().map(|s| s.name.as_str()).collect();
    if graph.inputs != declared {
        return Err(format!(
            "graph inputs {:?}, manifest says {declared:?}",
            graph.inputs
        ));
    }
    if graph.outputs.len() != manifest.outputs.len() {
        return Err(format!(
            "graph outputs {:?} differ from the manifest",
            graph.outputs
        ));
    }
    Ok(())
}

/// A text model's plans: one per length bucket, or one for every length (`ANY_LENGTH`);
/// each input is `[1, length]`.
fn text_plans(
    graph: &Graph,
    manifest: &Manifest,
    spec: &TextSpec,
) -> Result<Vec<(usize, Plan)>, String> {
    let lengths = match spec.buckets.as_slice() {
        [] => vec![None],
        buckets => buckets.iter().map(|&b| Some(b)).collect(),
    };
    lengths
        .into_iter()
        .map(|len| {
            let seq = len.map_or(Dim::Symbolic("S"), Dim::Fixed);
            let shapes: Vec<_> = manifest
                .inputs
                .iter()
                .map(|i| (i.datatype, vec![Dim::Fixed(1), seq]))
                .collect();
            graph.plan(&shapes).map(|p| (len.unwrap_or(ANY_LENGTH), p))
        })
        .collect()
}

/// A tensor model's input shapes: a leading -1 is the batch axis `N`, other -1s symbolic.
fn tensor_shapes(manifest: &Manifest) -> Vec<(DataType, Vec<Dim>)> {
    manifest
        .inputs
        .iter()
        .map(|i| {
            let dims = i
                .shape
                .iter()
                .enumerate()
                .map(|(axis, &d)| match (axis, d) {
                    (0, -1) => Dim::Symbolic("N"),
                    (_, d) if d > 0 => Dim::Fixed(d as usize),
                    _ => Dim::Symbolic("S"),
                });
            (i.datatype, dims.collect())
        })
        .collect()
}

/// A request whose expected run time is below this runs on its connection's thread when a
/// worker's share is free (`pool::How::here`): the two thread hand-offs it saves cost more
/// than such an inference. Longer runs stay on the workers, whose thread-local scratch
/// space tract then keeps on a few threads, not on every connection's.
const RUN_HERE_BELOW: Duration = Duration::from_micros(500);

impl Model {
    /// Loads version `version` of model `name` from its folder `dir`: `model.toml`,
    /// `model.onnx` (and the tokenizer), and optimises the plans.
    pub fn load(dir: &Path, name: &str, version: u64) -> Result<Model, ModelError> {
        let manifest_path = dir.join("model.toml");
        let manifest_err = |reason: String| ModelError::Manifest {
            path: manifest_path.display().to_string(),
            reason,
        };
        let text =
            std::fs::read_to_string(&manifest_path).map_err(|e| manifest_err(e.to_string()))?;
        let manifest = Manifest::parse(&text, name, version).map_err(manifest_err)?;
        let onnx_path = dir.join("model.onnx");
        let load_err = |reason: String| ModelError::Load {
            path: onnx_path.display().to_string(),
            reason,
        };
        let bytes = files::read_onnx(&onnx_path).map_err(load_err)?;
        files::check_files(dir, &bytes).map_err(load_err)?;
        let graph = Graph::parse(&bytes).map_err(load_err)?;
        check_graph(&graph, &manifest).map_err(load_err)?;
        let runner = match (&manifest.task, &manifest.text) {
            (Task::TextClassification, Some(spec)) => Runner::Text {
                pre: Box::new(Preprocessor::load(
                    &files::inside(dir, &spec.tokenizer).map_err(|reason| {
                        ModelError::Tokenizer {
                            path: dir.join(&spec.tokenizer).display().to_string(),
                            reason,
                        }
                    })?,
                    spec.clone(),
                )?),
                plans: text_plans(&graph, &manifest, spec).map_err(load_err)?,
            },
            _ => Runner::Tensor {
                plan: graph.plan(&tensor_shapes(&manifest)).map_err(load_err)?,
            },
        };
        Ok(Model {
            graph_outputs: manifest.outputs.iter().map(|o| o.name.clone()).collect(),
            graph_inputs: graph.inputs,
            manifest,
            version,
            stats: Stats::default(),
            runner,
            item_ns: AtomicU64::new(0),
        })
    }

    /// Runs the model once on a made-up input (zeros, or the text "warm up"), on the
    /// caller's thread: a model that loads but cannot run fails here, not on a request.
    pub fn warm_up(&self) -> Result<(), ModelError> {
        if self.is_text() {
            return self.classify_now("warm up").map(|_| ());
        }
        // Capped: a manifest declaring a huge input is refused, not allocated.
        let inputs = add::zero_inputs(&self.manifest)
            .map_err(|reason| ModelError::input("warm_up_input", reason))?;
        self.infer_now(self.check(inputs)?.inputs).map(|_| ())
    }

    /// The matrix kernels of every plan, each with its count of graph nodes.
    pub fn kernels(&self) -> Vec<(String, usize)> {
        let mut all = BTreeMap::<String, usize>::new();
        let plans: Vec<&Plan> = match &self.runner {
            Runner::Text { plans, .. } => plans.iter().map(|(_, p)| p).collect(),
            Runner::Tensor { plan } => vec![plan],
        };
        for (kernel, n) in plans.iter().flat_map(|p| p.kernels()) {
            *all.entry(kernel).or_default() += n;
        }
        all.into_iter().collect()
    }

    /// Records a run of `items` batch items in the mean per item (weight 1/8 for the
    /// newest).
    fn ran(&self, took: Duration, items: usize) {
        let per_item = u64::try_from(took.as_nanos() / items.max(1) as u128).unwrap_or(u64::MAX);
        let old = self.item_ns.load(Ordering::Relaxed);
        let new = match old {
            0 => per_item.max(1),
            _ => (old - old / 8 + per_item / 8).max(1),
        };
        self.item_ns.store(new, Ordering::Relaxed);
    }

    /// Whether `items` batch items are expected to run in under `RUN_HERE_BELOW` (never
    /// before a first measurement).
    fn quick(&self, items: usize) -> bool {
        match self.item_ns.load(Ordering::Relaxed) {
            0 => false,
            ns => (ns as u128) * (items as u128) < RUN_HERE_BELOW.as_nanos(),
        }
    }

    pub fn name(&self) -> &str {
        &self.manifest.name
    }

    /// The manifest's task as written there.
    pub fn task_name(&self) -> &'static str {
        match self.manifest.task {
            Task::TextClassification => "text-classification",
            Task::Tensor => "tensor",
        }
    }

    pub fn is_text(&self) -> bool {
        matches!(self.runner, Runner::Text { .. })
    }

    /// Text-model limits, for validation before the queue.
    pub fn text_limits(&self) -> Option<&manifest::TextSpec> {
        match &self.runner {
            Runner::Text { pre, .. } => Some(pre.spec()),
            Runner::Tensor { .. } => None,
        }
    }

    /// Tokenises texts on the caller's thread, refusing any longer than the model takes:
    /// what a request costs is known before it queues.
    pub fn encode_texts(&self, texts: &[String]) -> Result<Vec<Encoded>, ModelError> {
        let Runner::Text { pre, .. } = &self.runner else {
            return Err(ModelError::input(
                "not_a_text_model",
                format!("model {} does not take text", self.name()),
            ));
        };
        texts.iter().map(|t| pre.encode(t)).collect()
    }

    /// Classifies one text on the caller's thread (warm-up; requests go through the pool).
    fn classify_now(&self, text: &str) -> Result<(Classification, usize), ModelError> {
        let encoded = self.encode_texts(&[text.to_owned()])?;
        self.classify_encoded(&encoded[0])
    }

    /// Classifies one tokenised text (runs on the caller's thread; use the repository to
    /// queue it). Also says which length bucket ran.
    fn classify_encoded(&self, encoded: &Encoded) -> Result<(Classification, usize), ModelError> {
        let Runner::Text { plans, .. } = &self.runner else {
            return Err(ModelError::input(
                "not_a_text_model",
                format!("model {} does not take text", self.name()),
            ));
        };
        let len = encoded.ids.len();
        // encode() padded to one of the buckets (a plan exists for it), or did not pad and
        // the one plan takes any length.
        let Some((_, plan)) = plans.iter().find(|(b, _)| *b == len || *b == ANY_LENGTH) else {
            return Err(ModelError::Inference(format!("no plan for length {len}")));
        };
        let inputs = self
            .graph_inputs
            .iter()
            .map(|name| {
                let data = match name.as_str() {
                    "input_ids" => encoded.ids.clone(),
                    "attention_mask" => encoded.mask.clone(),
                    _ => vec![0; len],
                };
                Tensor {
                    name: name.clone(),
                    shape: vec![1, len],
                    data: Data::I64(data),
                }
            })
            .collect();
        let outputs = plan
            .run(inputs, &self.graph_outputs)
            .map_err(ModelError::Inference)?;
        let probabilities = match outputs.into_iter().next().map(|t| t.data) {
            Some(Data::F32(p)) if p.len() == self.manifest.labels.len() => p,
            _ => return Err(ModelError::Inference("unexpected classifier output".into())),
        };
        let (best, score) =
            probabilities
                .iter()
                .copied()
                .enumerate()
                .fold(
                    (0, f32::MIN),
                    |acc, (i, p)| if p > acc.1 { (i, p) } else { acc },
                );
        let scores = self
            .manifest
            .labels
            .iter()
            .cloned()
            .zip(probabilities.iter().copied())
            .collect();
        let classification = Classification {
            label: self.manifest.labels[best].clone(),
            score,
            scores,
            probabilities,
        };
        // For the metrics' bucket label: the padded length, or the length rounded up to a
        // power of two (at least 16) when nothing is padded, to keep the label set small.
        let bucket = match plans.len() {
            1 if plans[0].0 == ANY_LENGTH => len.next_power_of_two().max(16),
            _ => len,
        };
        Ok((classification, bucket))
    }

    fn batch_error(&self) -> ModelError {
        ModelError::input(
            "wrong_shape",
            format!(
                "batch must be 1..={} and the same for every input",
                self.manifest.max_batch
            ),
        )
    }

    /// Checks tensors against the manifest (names, datatypes, ranks, fixed dims, batch cap,
    /// finite values) and orders them as the graph wants them.
    pub fn check(&self, mut inputs: Vec<Tensor>) -> Result<Checked, ModelError> {
        let mut ordered = Vec::with_capacity(self.manifest.inputs.len());
        let mut batch: Option<usize> = None;
        for spec in &self.manifest.inputs {
            let pos = inputs
                .iter()
                .position(|t| t.name == spec.name)
                .ok_or_else(|| {
                    ModelError::input("missing_input", format!("input {} is required", spec.name))
                })?;
            let t = inputs.swap_remove(pos);
            self.check_input(&t.name, t.data.datatype(), &t.shape)?;
            let n = t.shape[0];
            if batch.is_some_and(|b| b != n) {
                return Err(self.batch_error());
            }
            batch = Some(n);
            if let Data::F32(v) = &t.data
                && v.iter().any(|x| !x.is_finite())
            {
                return Err(ModelError::input(
                    "non_finite",
                    format!("input {} holds NaN or infinity", spec.name),
                ));
            }
            ordered.push(t);
        }
        if let Some(extra) = inputs.first() {
            return Err(ModelError::input(
                "unknown_input",
                format!("model has no input {}", extra.name),
            ));
        }
        Ok(Checked {
            inputs: ordered,
            batch: batch.unwrap_or(1),
        })
    }

    fn infer_now(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, ModelError> {
        match &self.runner {
            Runner::Tensor { plan } => plan
                .run(inputs, &self.graph_outputs)
                .map_err(ModelError::Inference),
            Runner::Text { .. } => Err(ModelError::input(
                "text_model",
                "this model takes text".into(),
            )),
        }
    }
}

impl tensor::InputCheck for Model {
    /// A text model takes one BYTES input `text` of shape `[n]` or `[n, 1]`; a tensor model
    /// the inputs of its manifest (rank, fixed dimensions); either, a batch `n` of
    /// 1..=`max_batch`.
    fn check_input(
        &self,
        name: &str,
        datatype: DataType,
        shape: &[usize],
    ) -> Result<(), ModelError> {
        let max = self.manifest.max_batch;
        if self.is_text() {
            if datatype != DataType::Bytes {
                return Err(ModelError::input(
                    "wrong_datatype",
                    "input text must be BYTES".into(),
                ));
            }
            let n = shape.first().copied().unwrap_or(0);
            if name != "text" || !matches!(shape, [_] | [_, 1]) || n == 0 || n > max {
                return Err(ModelError::input(
                    "wrong_shape",
                    format!("input must be text with shape [n] or [n, 1], n in 1..={max}"),
                ));
            }
            return Ok(());
        }
        let spec = self
            .manifest
            .inputs
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| {
                ModelError::input("unknown_input", format!("model has no input {name}"))
            })?;
        if datatype != spec.datatype {
            return Err(ModelError::input(
                "wrong_datatype",
                format!(
                    "input {name} must be {}, got {}",
                    spec.datatype.as_str(),
                    datatype.as_str()
                ),
            ));
        }
        let fits = shape.len() == spec.shape.len()
            && shape
                .iter()
                .zip(&spec.shape)
                .all(|(&got, &want)| want == -1 || got as i64 == want);
        if !fits {
            return Err(ModelError::input(
                "wrong_shape",
                format!(
                    "input {name} has shape {shape:?}; the model takes {:?} (-1: any)",
                    spec.shape
                ),
            ));
        }
        match shape.first() {
            Some(&n) if n >= 1 && n <= max => Ok(()),
            _ => Err(self.batch_error()),
        }
    }
}

/// Tensors a model accepted, in its input order, and their batch size.
#[derive(Debug)]
pub struct Checked {
    inputs: Vec<Tensor>,
    batch: usize,
}

impl Checked {
    /// Batch items: what the request costs against its caller's quota.
    pub fn cost(&self) -> u32 {
        u32::try_from(self.batch).unwrap_or(u32::MAX)
    }
}

/// What tokenised texts cost against a caller's quota: one unit per started
/// `tokens_per_unit` tokens of each text.
pub fn text_cost(texts: &[Encoded], tokens_per_unit: u32) -> u32 {
    let unit = tokens_per_unit.max(1) as usize;
    let units: usize = texts.iter().map(|t| t.tokens.div_ceil(unit).max(1)).sum();
    u32::try_from(units).unwrap_or(u32::MAX)
}

/// tract-linalg's AVX2 int8 kernel, whose inner loop mixes a legacy-SSE load into VEX-256
/// code (docs/text-model-performance.md): the load path warns when a model runs on it.
const SLOW_INT8_KERNEL: &str = "avx2_mmm_i32";

/// The plan key of a text model's single plan for every sequence length.
const ANY_LENGTH: usize = usize::MAX;
