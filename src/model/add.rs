//! `inferd model add`: an ONNX file into the repository as `DIR/NAME/N/` with a generated
//! `model.toml`, after loading it as the server would and running it once. Staged in a
//! temporary folder beside the target and renamed into place: a model that fails leaves
//! nothing behind, and a server never sees half a version.

use super::inspect::{served, spec, tensor_manifest};
use super::manifest::{Manifest, Task, TensorSpec};
use super::tensor::{Data, DataType, Tensor};
use super::{Model, ModelError, files, onnx};
use std::path::{Path, PathBuf};

/// What to add, and where.
#[derive(Debug, Clone)]
pub struct AddOptions {
    pub name: String,
    /// `None`: one above the highest version present, else 1.
    pub version: Option<u64>,
    /// The repository (`[models] dir`).
    pub models_dir: PathBuf,
    /// Class names: required with a tokenizer (one per output column), else only recorded.
    pub labels: Vec<String>,
    /// A Hugging Face `tokenizer.json`: makes a `text-classification` model.
    pub tokenizer: Option<PathBuf>,
}

/// A model version now in the repository.
pub struct Added {
    /// `DIR/NAME/N`.
    pub dir: PathBuf,
    pub version: u64,
    pub model: Model,
}

/// Defaults written into a generated `[text]` (docs/models.md): edit `model.toml` after.
const MAX_TOKENS: usize = 128;
const MAX_TEXT_BYTES: usize = 4096;

/// A name the repository loads (a folder, a URL path segment, a `predict:<name>` scope).
pub fn check_name(name: &str) -> Result<(), String> {
    if super::folders::valid_name(name) {
        Ok(())
    } else {
        Err(format!(
            "model name {name:?}: up to 128 ASCII letters, digits, '_', '-' or '.', not \
             starting with '.'"
        ))
    }
}

/// The versions present under `DIR/NAME` (numeric folder names).
fn versions(model_dir: &Path) -> Vec<u64> {
    let Ok(entries) = std::fs::read_dir(model_dir) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let v = name.parse::<u64>().ok()?;
            // As the loader reads them: no leading zero, 1 or above.
            (v >= 1 && v.to_string() == name).then_some(v)
        })
        .collect()
}

/// The version to write: the one asked for (refused if present), else the next.
fn pick_version(model_dir: &Path, asked: Option<u64>) -> Result<u64, String> {
    if model_dir.join("model.toml").exists() {
        return Err(format!(
            "{} holds a model in the single-folder layout; move its files into {}/1/ \
             first, then add versions beside it",
            model_dir.display(),
            model_dir.display()
        ));
    }
    match asked {
        Some(0) => Err("--version must be a positive integer".into()),
        Some(v) if model_dir.join(v.to_string()).exists() => Err(format!(
            "{} already exists; versions are never overwritten (pick another --version)",
            model_dir.join(v.to_string()).display()
        )),
        Some(v) => Ok(v),
        None => Ok(versions(model_dir).into_iter().max().unwrap_or(0) + 1),
    }
}

/// A text classifier's one output, `FP32 [batch, labels]`.
fn text_output(summary: &onnx::Summary, labels: &[String]) -> Result<TensorSpec, String> {
    if labels.len() < 2 {
        return Err(
            "a text model (--tokenizer) needs --labels with two or more names, \
                    one per output column, in the output's order"
                .into(),
        );
    }
    let [output] = summary.outputs.as_slice() else {
        return Err(format!(
            "a text classifier must have exactly one output; this graph has {}",
            summary.outputs.len()
        ));
    };
    let mut out = spec(output, "output")?;
    if let Some(&n) = out.shape.last()
        && n != -1
        && n != labels.len() as i64
    {
        return Err(format!(
            "output {:?} has {n} columns but {} labels were given",
            out.name,
            labels.len()
        ));
    }
    if out.shape.len() != 2 || out.datatype != DataType::Fp32 {
        return Err(format!(
            "output {:?} must be FP32 [batch, labels] for a text classifier",
            out.name
        ));
    }
    out.shape = vec![-1, labels.len() as i64];
    Ok(out)
}

/// The manifest for a text classifier: inputs as inferd feeds them (int64 `[1, tokens]`),
/// one FP32 output `[batch, labels]`.
fn text_manifest(summary: &onnx::Summary, labels: &[String]) -> Result<Manifest, String> {
    let output = text_output(summary, labels)?;
    let mut seq = -1;
    let mut inputs = Vec::new();
    for value in &summary.inputs {
        let s = spec(value, "input")?;
        if s.shape.len() != 2 || served(value.elem_type).is_none() {
            return Err(format!("text input {:?} must be [batch, tokens]", s.name));
        }
        seq = seq.max(s.shape[1]);
        inputs.push(TensorSpec {
            name: s.name,
            datatype: DataType::Int64,
            shape: vec![-1, -1],
        });
    }
    // A graph with a fixed sequence length takes texts padded to exactly that.
    let (max_tokens, buckets) = match usize::try_from(seq) {
        Ok(len) => (len, vec![len]),
        Err(_) => (MAX_TOKENS, Vec::new()),
    };
    let mut m = tensor_manifest(summary)?;
    m.task = Task::TextClassification;
    m.labels = labels.to_vec();
    m.inputs = inputs;
    m.outputs = vec![output];
    m.text = Some(super::manifest::TextSpec {
        tokenizer: "tokenizer.json".into(),
        max_tokens,
        buckets,
        max_text_bytes: MAX_TEXT_BYTES,
    });
    Ok(m)
}

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

fn toml_tensors(table: &str, specs: &[TensorSpec]) -> String {
    specs
        .iter()
        .map(|s| {
            format!(
                "\n[[{table}]]\nname = {}\ndatatype = \"{}\"\nshape = {:?}\n",
                toml_string(&s.name),
                s.datatype.as_str(),
                s.shape
            )
        })
        .collect()
}

/// `model.toml` as `add` writes it: every key spelt out, with a comment saying where it
/// came from.
pub fn render(m: &Manifest, source: &Path) -> String {
    let task = match m.task {
        Task::Tensor => "tensor",
        Task::TextClassification => "text-classification",
    };
    let labels: Vec<String> = m.labels.iter().map(|l| toml_string(l)).collect();
    let mut out = format!(
        "# Written by `inferd model add` from {} (docs/models.md).\n\
         name = {}\nversion = \"{}\"\ntask = \"{task}\"\ndescription = {}\nmax_batch = {}\n",
        source.display(),
        toml_string(&m.name),
        m.version,
        toml_string(&m.description),
        m.max_batch,
    );
    if !labels.is_empty() {
        out.push_str(&format!("labels = [{}]\n", labels.join(", ")));
    }
    if let Some(t) = &m.text {
        out.push_str(&format!(
            "\n[text]\ntokenizer = {}\nmax_tokens = {}\nbuckets = {:?}\nmax_text_bytes = {}\n",
            toml_string(&t.tokenizer),
            t.max_tokens,
            t.buckets,
            t.max_text_bytes
        ));
    }
    out.push_str(&toml_tensors("inputs", &m.inputs));
    out.push_str(&toml_tensors("outputs", &m.outputs));
    out
}

/// Most elements of one made-up input (64 Mi, 256 MiB of FP32): a graph declaring a larger
/// input is refused before anything is allocated for it.
pub const MAX_ZERO_ELEMENTS: usize = 1 << 26;

/// Zero-valued inputs of the manifest's shapes (every `-1` as 1): the first run, and the
/// body of the request `add` prints. Refuses a shape above [`MAX_ZERO_ELEMENTS`].
pub fn zero_inputs(m: &Manifest) -> Result<Vec<Tensor>, String> {
    m.inputs
        .iter()
        .map(|spec| {
            let shape: Vec<usize> = spec
                .shape
                .iter()
                .map(|&d| usize::try_from(d).unwrap_or(1).max(1))
                .collect();
            let n = super::tensor::element_count(&shape)
                .filter(|&n| n <= MAX_ZERO_ELEMENTS)
                .ok_or_else(|| {
                    format!(
                        "input {:?} of shape {:?} holds more than {MAX_ZERO_ELEMENTS} elements",
                        spec.name, spec.shape
                    )
                })?;
            let data = match spec.datatype {
                DataType::Fp32 => Data::F32(vec![0.0; n]),
                DataType::Int64 => Data::I64(vec![0; n]),
                DataType::Int32 => Data::I32(vec![0; n]),
                DataType::Uint8 => Data::U8(vec![0; n]),
                DataType::Bool => Data::Bool(vec![false; n]),
                DataType::Bytes => Data::Bytes(vec![Vec::new(); n]),
            };
            Ok(Tensor {
                name: spec.name.clone(),
                shape,
                data,
            })
        })
        .collect()
}

/// Refuses made-up inputs above [`MAX_ZERO_ELEMENTS`] without allocating them.
fn check_zero_size(m: &Manifest) -> Result<(), String> {
    for spec in &m.inputs {
        let shape: Vec<usize> = spec
            .shape
            .iter()
            .map(|&d| usize::try_from(d).unwrap_or(1).max(1))
            .collect();
        match super::tensor::element_count(&shape) {
            Some(n) if n <= MAX_ZERO_ELEMENTS => {}
            _ => {
                return Err(format!(
                    "input {:?} of shape {:?} holds more than {MAX_ZERO_ELEMENTS} elements",
                    spec.name, spec.shape
                ));
            }
        }
    }
    Ok(())
}

/// Loads a staged version as the server will, and runs it once as its warm-up does.
fn load_and_run(staged: &Path, name: &str, version: u64) -> Result<Model, ModelError> {
    let model = Model::load(staged, name, version)?;
    check_zero_size(&model.manifest).map_err(ModelError::Inference)?;
    model.warm_up()?;
    Ok(model)
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> ModelError + '_ {
    move |e| ModelError::Load {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

/// Writes the version's files into `dir` (an empty folder) and returns its manifest.
fn stage(
    onnx_path: &Path,
    bytes: &[u8],
    dir: &Path,
    opts: &AddOptions,
    version: u64,
) -> Result<Manifest, ModelError> {
    let refuse = |reason: String| ModelError::Load {
        path: onnx_path.display().to_string(),
        reason,
    };
    let summary = onnx::read(bytes).map_err(refuse)?;
    if let Some(e) = summary.external.first() {
        return Err(refuse(format!(
            "tensor {:?} keeps its data in an external file ({}); inferd loads self-contained \
             model.onnx files only",
            e.tensor,
            e.location.as_deref().unwrap_or("no location")
        )));
    }
    let mut manifest = match &opts.tokenizer {
        Some(_) => text_manifest(&summary, &opts.labels),
        None => tensor_manifest(&summary).map(|mut m| {
            m.labels = opts.labels.clone();
            m
        }),
    }
    .map_err(refuse)?;
    manifest.name = opts.name.clone();
    manifest.version = version.to_string();
    let write = |name: &str, data: &[u8]| {
        let path = dir.join(name);
        crate::atomic_file::write(&path, data, 0o644).map_err(io_err(&path))
    };
    write("model.onnx", bytes)?;
    if let Some(tokenizer) = &opts.tokenizer {
        write(
            "tokenizer.json",
            &std::fs::read(tokenizer).map_err(io_err(tokenizer))?,
        )?;
    }
    write("model.toml", render(&manifest, onnx_path).as_bytes())?;
    Ok(manifest)
}

/// An error about the staged copy, said of the file the user gave (the staging folder is
/// gone by the time it is printed).
fn from_source(e: ModelError, onnx_path: &Path, opts: &AddOptions) -> ModelError {
    let refused = |reason: String| ModelError::Load {
        path: onnx_path.display().to_string(),
        reason: format!("refused, nothing written: {reason}"),
    };
    match e {
        ModelError::Load { reason, .. } | ModelError::Manifest { reason, .. } => refused(reason),
        ModelError::Tokenizer { reason, .. } => ModelError::Tokenizer {
            path: opts
                .tokenizer
                .as_deref()
                .unwrap_or(Path::new("tokenizer.json"))
                .display()
                .to_string(),
            reason: format!("refused, nothing written: {reason}"),
        },
        ModelError::Inference(reason) => refused(format!("the first run failed: {reason}")),
        ModelError::Input { message, .. } | ModelError::Invalid { message, .. } => {
            refused(format!("the first run on zero input failed: {message}"))
        }
        other => other,
    }
}

/// Adds `onnx_path` to the repository as `DIR/NAME/N/`. On any failure, nothing is left:
/// not the staging folder, not a folder this call created.
pub fn add(onnx_path: &Path, opts: &AddOptions) -> Result<Added, ModelError> {
    let refuse = |reason: String| ModelError::Load {
        path: onnx_path.display().to_string(),
        reason,
    };
    check_name(&opts.name).map_err(refuse)?;
    let bytes = files::read_onnx(onnx_path).map_err(refuse)?;
    let model_dir = opts.models_dir.join(&opts.name);
    let version = pick_version(&model_dir, opts.version).map_err(refuse)?;
    let target = model_dir.join(version.to_string());
    let created: Vec<PathBuf> = [&opts.models_dir, &model_dir]
        .into_iter()
        .filter(|d| !d.exists())
        .cloned()
        .collect();
    let staging = opts.models_dir.join(format!(
        ".{}.{version}.tmp-{}",
        opts.name,
        std::process::id()
    ));
    let result = std::fs::create_dir_all(&staging)
        .map_err(io_err(&staging))
        .and_then(|()| stage(onnx_path, &bytes, &staging, opts, version))
        .and_then(|_| load_and_run(&staging, &opts.name, version))
        .and_then(|model| {
            std::fs::create_dir_all(&model_dir).map_err(io_err(&model_dir))?;
            if target.exists() {
                return Err(refuse(format!("{} appeared meanwhile", target.display())));
            }
            std::fs::rename(&staging, &target).map_err(io_err(&target))?;
            std::fs::File::open(&model_dir)
                .and_then(|d| d.sync_all())
                .map_err(io_err(&model_dir))?;
            Ok(model)
        });
    let _ = std::fs::remove_dir_all(&staging);
    match result.map_err(|e| from_source(e, onnx_path, opts)) {
        Ok(model) => Ok(Added {
            dir: target,
            version,
            model,
        }),
        Err(e) => {
            // Innermost first; remove_dir leaves a folder that is not empty.
            for dir in created.iter().rev() {
                let _ = std::fs::remove_dir(dir);
            }
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_folder_url_and_scope_safe() {
        for good in ["digits", "my-model_2", "a.b"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", ".hidden", "a/b", "..", "a b", "é", &"x".repeat(129)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn next_version_is_one_above_the_highest_and_existing_ones_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let m = tmp.path().join("m");
        assert_eq!(pick_version(&m, None).unwrap(), 1);
        for v in ["1", "3", "notes"] {
            std::fs::create_dir_all(m.join(v)).unwrap();
        }
        assert_eq!(pick_version(&m, None).unwrap(), 4);
        assert_eq!(pick_version(&m, Some(2)).unwrap(), 2);
        assert!(
            pick_version(&m, Some(3))
                .unwrap_err()
                .contains("already exists")
        );
        assert!(pick_version(&m, Some(0)).is_err());
        std::fs::write(m.join("model.toml"), "").unwrap();
        assert!(
            pick_version(&m, None)
                .unwrap_err()
                .contains("single-folder")
        );
    }

    #[test]
    fn rendered_manifest_parses_back() {
        let mut m = Manifest::parse(
            "name = \"x\"\nversion = \"1\"\ntask = \"tensor\"\n[[inputs]]\nname = \"in \\\"q\\\"\"\n\
             datatype = \"FP32\"\nshape = [-1, 4]\n[[outputs]]\nname = \"out\"\n\
             datatype = \"INT64\"\nshape = [-1]\n",
            "x",
            1,
        )
        .unwrap();
        m.labels = vec!["a".into(), "b".into()];
        let text = render(&m, Path::new("/tmp/x.onnx"));
        let back = Manifest::parse(&text, "x", 1).unwrap();
        assert_eq!(back.inputs[0].name, "in \"q\"");
        assert_eq!(back.outputs[0].shape, vec![-1]);
        assert_eq!(back.labels, m.labels);
    }
}
