//! `inferd model inspect` and `inferd model add`: bring your own ONNX model, and what a
//! client must then send.

use super::{CliError, load_config};
use crate::config::Config;
use crate::model::add::{self, AddOptions, Added};
use crate::model::inspect::{self, Inspection};
use crate::model::tensor::{Data, DataType};
use clap::Subcommand;
use serde_json::json;
use std::path::{Path, PathBuf};

#[derive(Subcommand, Debug)]
pub enum ModelCommand {
    /// Print an ONNX file's inputs, outputs and opsets, and whether tract runs it (naming
    /// each operator it lacks). Exits 1 when inferd could not serve it.
    Inspect {
        file: PathBuf,
        /// Print one JSON document (its shape: docs/models.md).
        #[arg(long)]
        json: bool,
    },
    /// Copy an ONNX file into the repository as NAME/N/ with a generated model.toml, after
    /// loading it and running it once; refuses, leaving nothing, what tract cannot run.
    Add {
        file: PathBuf,
        #[arg(long)]
        name: String,
        /// Default: the highest version present + 1, else 1.
        #[arg(long)]
        version: Option<u64>,
        /// The models folder. Default: `[models] dir` of --config, else ./models.
        #[arg(long, conflicts_with = "config")]
        models: Option<PathBuf>,
        /// The server's config: its models folder, and its address and CA for the curl line.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Class names in output order, comma-separated (required with --tokenizer).
        #[arg(long, value_delimiter = ',')]
        labels: Vec<String>,
        /// A Hugging Face tokenizer.json: makes a text-classification model.
        #[arg(long)]
        tokenizer: Option<PathBuf>,
    },
    #[command(flatten)]
    Signing(super::sign::ModelSignCommand),
}

/// Runs `inferd model ...`.
pub fn run(command: ModelCommand) -> Result<(), CliError> {
    match command {
        ModelCommand::Inspect { file, json } => inspect_cmd(&file, json),
        ModelCommand::Signing(command) => super::sign::run_model(command),
        ModelCommand::Add {
            file,
            name,
            version,
            models,
            config,
            labels,
            tokenizer,
        } => {
            let config = config.as_deref().map(load_config).transpose()?;
            let models_dir = models
                .or_else(|| config.as_ref().map(|c| c.models.dir.clone()))
                .unwrap_or_else(|| PathBuf::from("models"));
            let opts = AddOptions {
                name,
                version,
                models_dir,
                labels,
                tokenizer,
            };
            let added = add::add(&file, &opts)?;
            print_added(&added, config.as_ref());
            Ok(())
        }
    }
}

fn inspect_cmd(file: &Path, json: bool) -> Result<(), CliError> {
    super::init_logging(log::LevelFilter::Error);
    let report = inspect::inspect(file)?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else {
        print_inspection(&report);
    }
    match (&report.tract.optimises, &report.tract.error) {
        (true, _) => Ok(()),
        (false, reason) => Err(CliError::NotServable {
            path: report.file.clone(),
            reason: reason.clone().unwrap_or_default(),
        }),
    }
}

fn print_inspection(r: &Inspection) {
    let opsets: Vec<String> = r
        .opsets
        .iter()
        .map(|o| match o.domain.as_str() {
            "" => format!("ai.onnx {}", o.version),
            d => format!("{d} {}", o.version),
        })
        .collect();
    println!(
        "file:     {} ({} bytes, sha256 {})",
        r.file, r.bytes, r.sha256
    );
    println!(
        "format:   ONNX IR {}, opsets {}, {} nodes, made by {}",
        r.ir_version,
        opsets.join(", "),
        r.nodes,
        if r.producer.is_empty() {
            "?"
        } else {
            &r.producer
        }
    );
    for (what, list) in [("input ", &r.inputs), ("output", &r.outputs)] {
        for io in list {
            let dims = match &io.dims {
                Some(d) => serde_json::to_string(d).unwrap_or_default(),
                None => "(rank unknown)".into(),
            };
            let note = if io.served {
                ""
            } else {
                "  (not served by inferd)"
            };
            println!("{what}    {} {} {dims}{note}", io.name, io.datatype);
        }
    }
    let t = &r.tract;
    for u in &t.unsupported {
        println!("unsupported operator {} at node {:?}", u.op, u.node);
    }
    match (t.parses, t.optimises) {
        (true, true) => println!("tract:    loads and optimises it: inferd can serve it"),
        (true, false) => println!("tract:    loads it, cannot optimise it"),
        _ => println!("tract:    cannot load it"),
    }
    if let Some(e) = &t.error {
        println!("reason:   {e}");
    }
}

/// Where a client reaches the server, and the CA it trusts: from the config, else the
/// defaults of `inferd init`.
fn endpoint(config: Option<&Config>) -> (String, Option<String>) {
    let Some(c) = config else {
        return (
            "https://127.0.0.1:8443".into(),
            Some("inferd-demo/tls/ca.pem".into()),
        );
    };
    match &c.tls {
        None => (format!("http://{}", c.listen), None),
        Some(tls) => {
            // `init` writes the CA beside the certificate; the chain file also works.
            let ca = tls.cert.with_file_name("ca.pem");
            let ca = if ca.is_file() { ca } else { tls.cert.clone() };
            (
                format!("https://{}", c.listen),
                Some(ca.display().to_string()),
            )
        }
    }
}

/// Largest zero input printed inline in the curl line; above, a python line writes it.
const INLINE_ELEMENTS: usize = 4096;

/// The OIP request body a client sends: zeros of the model's shapes, or a text.
fn request_body(added: &Added) -> serde_json::Value {
    let m = &added.model.manifest;
    if added.model.is_text() {
        return json!({"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES",
            "data": ["I love this, it works wonderfully!"]}]});
    }
    // It ran on these inputs a moment ago.
    let inputs: Vec<_> = add::zero_inputs(m)
        .unwrap_or_default()
        .into_iter()
        .map(|t| {
            let datatype = t.data.datatype().as_str();
            let data = match t.data {
                Data::F32(v) => json!(v),
                Data::I64(v) => json!(v),
                Data::I32(v) => json!(v),
                Data::U8(v) => json!(v),
                Data::Bool(v) => json!(v),
                Data::Bytes(v) => json!(vec![""; v.len()]),
            };
            json!({"name": t.name, "shape": t.shape, "datatype": datatype,
                "data": data})
        })
        .collect();
    json!({ "inputs": inputs })
}

/// A Python expression of the body with each input's data as `[zero] * n`.
fn python_zeros(body: &serde_json::Value) -> String {
    let inputs: Vec<String> = body["inputs"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|i| {
            let n = i["data"].as_array().map_or(0, Vec::len);
            let zero = match i["datatype"].as_str() {
                Some("FP32") => "0.0",
                Some("BOOL") => "False",
                _ => "0",
            };
            format!(
                "{{\"name\": {}, \"shape\": {}, \"datatype\": {}, \"data\": [{zero}] * {n}}}",
                i["name"], i["shape"], i["datatype"]
            )
            .replace('\'', "'\\''")
        })
        .collect();
    format!("{{\"inputs\": [{}]}}", inputs.join(", "))
}

/// `GET /v2/models/{name}` as the server answers it (mirrors
/// `api::handlers::model_metadata`; tests/it/model_cli.rs compares the two).
pub fn metadata(model: &crate::model::Model) -> serde_json::Value {
    let m = &model.manifest;
    let meta = |name: &str, datatype: DataType, shape: &[i64]| json!({ "name": name, "datatype": datatype.as_str(), "shape": shape });
    let (inputs, outputs): (Vec<_>, Vec<_>) = if model.is_text() {
        let n = m.labels.len() as i64;
        (
            vec![meta("text", DataType::Bytes, &[-1])],
            vec![
                meta("probabilities", DataType::Fp32, &[-1, n]),
                meta("label", DataType::Bytes, &[-1]),
            ],
        )
    } else {
        (
            m.inputs
                .iter()
                .map(|s| meta(&s.name, s.datatype, &s.shape))
                .collect(),
            m.outputs
                .iter()
                .map(|s| meta(&s.name, s.datatype, &s.shape))
                .collect(),
        )
    };
    json!({
        "name": m.name,
        "versions": [m.version],
        "platform": "onnx_tract",
        "inputs": inputs,
        "outputs": outputs,
    })
}

/// What in the server's config would keep it from serving the new version.
fn serving_notes(c: &Config, name: &str, added: &Added) -> String {
    use crate::config::VersionPolicy;
    let mut notes = String::new();
    if c.models.require_signed {
        notes += &format!(
            " This server loads signed models only: sign {} first (inferd model sign).",
            added.dir.display()
        );
    }
    if !c.models.enabled.is_empty() && !c.models.enabled.iter().any(|e| e == name) {
        notes += &format!(" [models] enabled does not list {name:?}: add it, or it is not loaded.");
    }
    let policy = c
        .models
        .version_policies
        .get(name)
        .unwrap_or(&c.models.version_policy);
    if let VersionPolicy::Specific(versions) = policy
        && !versions.contains(&added.version)
    {
        notes += &format!(
            " The version policy of {name:?} ({versions:?}) does not select version {}.",
            added.version
        );
    }
    notes
}

fn print_added(added: &Added, config: Option<&Config>) {
    let name = added.model.name();
    let (base, ca) = endpoint(config);
    let signed = config
        .map(|c| serving_notes(c, name, added))
        .unwrap_or_default();
    let cacert = ca.map(|c| format!("--cacert {c} ")).unwrap_or_default();
    println!(
        "added {name} version {}: {} (model.onnx, model.toml{}); loaded and ran once\n",
        added.version,
        added.dir.display(),
        if added.model.is_text() {
            ", tokenizer.json"
        } else {
            ""
        }
    );
    let body = request_body(added);
    let elements: usize = body["inputs"].as_array().map_or(0, |a| {
        a.iter()
            .map(|i| i["data"].as_array().map_or(0, Vec::len))
            .sum()
    });
    // In single quotes for the shell.
    let quoted = |v: &serde_json::Value| v.to_string().replace('\'', "'\\''");
    let data = if elements <= INLINE_ELEMENTS {
        format!("'{}'", quoted(&body))
    } else {
        println!(
            "The request body is large: write it to request.json first,\n\n  python3 -c \
             'import json; print(json.dumps({}))' > request.json\n",
            python_zeros(&body)
        );
        "@request.json".to_owned()
    };
    println!(
        "The server serves it after a reload (kill -HUP, systemctl reload inferd, or POST \
         /v2/repository/models/{name}/load with an admin key).{signed} A client with scope \
         predict or predict:{name} sends:\n\n  \
         curl {cacert}-H \"X-API-Key: $INFERD_API_KEY\" -H 'Content-Type: application/json' \
         -d {data} {base}/v2/models/{name}/infer\n"
    );
    println!(
        "Its metadata (GET {base}/v2/models/{name}):\n{}",
        serde_json::to_string_pretty(&metadata(&added.model)).unwrap_or_default()
    );
}
