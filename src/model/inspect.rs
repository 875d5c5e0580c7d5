//! `inferd model inspect`: what an ONNX file declares (inputs, outputs, opsets) and whether
//! tract parses and optimises it, naming each operator it lacks. Also the mapping from a
//! graph's declared inputs and outputs to manifest tensors, which `model add` writes.

use super::manifest::{Manifest, Task, TensorSpec};
use super::onnx::{self, Dim, Opset, Summary};
use super::runtime::Graph;
use super::tensor::DataType;
use super::{ModelError, files};
use serde::Serialize;
use std::path::Path;

/// The report, as `--json` prints it (its shape is documented in docs/models.md).
#[derive(Debug, Serialize)]
pub struct Inspection {
    pub file: String,
    pub bytes: u64,
    /// Lower-case hex SHA-256 of the file.
    pub sha256: String,
    pub ir_version: i64,
    pub producer: String,
    pub opsets: Vec<Opset>,
    /// Nodes of the main graph.
    pub nodes: usize,
    pub inputs: Vec<Io>,
    pub outputs: Vec<Io>,
    pub tract: Verdict,
}

/// A graph input or output as declared.
#[derive(Debug, Serialize)]
pub struct Io {
    pub name: String,
    /// The Open Inference Protocol name of its type (`FP32`, `INT64`, ..., `FP16`).
    pub datatype: &'static str,
    /// Whether inferd serves that type here (inputs: FP32, INT64, INT32, UINT8, BOOL;
    /// outputs: the same).
    pub served: bool,
    /// As `model.toml` writes it: sizes, `-1` for a symbolic or unknown axis; `null` when
    /// the rank is not declared.
    pub shape: Option<Vec<i64>>,
    /// The declared axes: sizes, symbol names (`"batch"`), `"?"` for unknown; `null`
    /// when the rank is not declared.
    pub dims: Option<Vec<DimOut>>,
}

/// One declared axis in the report.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum DimOut {
    Size(i64),
    Symbol(String),
}

/// What tract makes of the graph.
#[derive(Debug, Default, Serialize)]
pub struct Verdict {
    /// tract read the graph (and every file it names is inside its folder).
    pub parses: bool,
    /// tract typed and optimised it with the input shapes inferd would use (a leading `-1`
    /// as the batch, other `-1`s as one variable length): it can serve it.
    pub optimises: bool,
    /// Operators tract does not implement, with the node using each.
    pub unsupported: Vec<Unsupported>,
    /// Why it does not parse or optimise; `null` when it does.
    pub error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Unsupported {
    pub node: String,
    pub op: String,
}

/// The datatype inferd serves for an ONNX element type, if it serves it (BYTES: strings,
/// never a graph input or a tensor output here).
pub fn served(elem_type: i32) -> Option<DataType> {
    DataType::parse(onnx::oip_name(elem_type)).filter(|d| *d != DataType::Bytes)
}

/// A graph value as a manifest tensor: a served datatype, a declared rank, `-1` for every
/// axis that is not a positive size.
pub fn spec(value: &onnx::Value, what: &str) -> Result<TensorSpec, String> {
    let datatype = served(value.elem_type).ok_or_else(|| {
        format!(
            "{what} {:?} is {}; inferd serves FP32, INT64, INT32, UINT8 and BOOL tensors",
            value.name,
            onnx::oip_name(value.elem_type)
        )
    })?;
    let dims = value
        .dims
        .as_ref()
        .filter(|d| !d.is_empty())
        .ok_or_else(|| {
            format!(
                "{what} {:?} declares no shape (or a scalar); inferd needs a rank of 1 or more",
                value.name
            )
        })?;
    let shape = dims
        .iter()
        .map(|d| match d {
            Dim::Size(n) if *n > 0 => *n,
            _ => -1,
        })
        .collect();
    Ok(TensorSpec {
        name: value.name.clone(),
        datatype,
        shape,
    })
}

/// A tensor manifest for the graph (name and version are placeholders the caller sets).
pub fn tensor_manifest(summary: &Summary) -> Result<Manifest, String> {
    let inputs = summary
        .inputs
        .iter()
        .map(|v| spec(v, "input"))
        .collect::<Result<Vec<_>, _>>()?;
    let outputs = summary
        .outputs
        .iter()
        .map(|v| spec(v, "output"))
        .collect::<Result<Vec<_>, _>>()?;
    if inputs.is_empty() || outputs.is_empty() {
        return Err("the graph needs at least one input and one output".into());
    }
    Ok(Manifest {
        name: String::new(),
        version: "1".into(),
        task: Task::Tensor,
        description: String::new(),
        labels: Vec::new(),
        max_batch: 64,
        text: None,
        inputs,
        outputs,
    })
}

fn io(value: &onnx::Value) -> Io {
    let dims = value.dims.as_ref().map(|dims| {
        dims.iter()
            .map(|d| match d {
                Dim::Size(n) => DimOut::Size(*n),
                Dim::Symbol(s) => DimOut::Symbol(s.clone()),
                Dim::Unknown => DimOut::Symbol("?".into()),
            })
            .collect()
    });
    let shape = value.dims.as_ref().map(|dims| {
        dims.iter()
            .map(|d| match d {
                Dim::Size(n) if *n > 0 => *n,
                _ => -1,
            })
            .collect()
    });
    Io {
        name: value.name.clone(),
        datatype: onnx::oip_name(value.elem_type),
        served: served(value.elem_type).is_some(),
        shape,
        dims,
    }
}

/// Tries tract on the bytes: parse, look for unimplemented operators, optimise with the
/// shapes a generated manifest would pin.
fn verdict(bytes: &[u8], summary: &Summary) -> Verdict {
    let graph = match Graph::parse(bytes) {
        Ok(graph) => graph,
        Err(e) => {
            return Verdict {
                error: Some(e),
                ..Verdict::default()
            };
        }
    };
    let unsupported: Vec<Unsupported> = graph
        .unsupported()
        .into_iter()
        .map(|(node, op)| Unsupported { node, op })
        .collect();
    let optimised = match unsupported.as_slice() {
        [] => tensor_manifest(summary).and_then(|m| graph.plan(&super::tensor_shapes(&m))),
        some => Err(format!(
            "tract does not implement {}",
            some.iter()
                .map(|u| format!("{} (node {:?})", u.op, u.node))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    };
    Verdict {
        parses: true,
        optimises: optimised.is_ok(),
        unsupported,
        error: optimised.err(),
    }
}

/// Inspects an ONNX file. Fails only when it cannot be read or is not ONNX at all; what
/// tract cannot do is in the report.
pub fn inspect(path: &Path) -> Result<Inspection, ModelError> {
    let load_err = |reason: String| ModelError::Load {
        path: path.display().to_string(),
        reason,
    };
    let bytes = files::read_onnx(path).map_err(load_err)?;
    let summary = onnx::read(&bytes).map_err(load_err)?;
    let folder = path.parent().unwrap_or(Path::new("."));
    let folder = if folder.as_os_str().is_empty() {
        Path::new(".")
    } else {
        folder
    };
    let tract = match files::check_files(folder, &bytes) {
        Ok(()) => verdict(&bytes, &summary),
        Err(reason) => Verdict {
            error: Some(reason),
            ..Verdict::default()
        },
    };
    Ok(Inspection {
        file: path.display().to_string(),
        bytes: bytes.len() as u64,
        sha256: ring::digest::digest(&ring::digest::SHA256, &bytes)
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
        ir_version: summary.ir_version,
        producer: summary.producer.clone(),
        opsets: summary.opsets.clone(),
        nodes: summary.nodes,
        inputs: summary.inputs.iter().map(io).collect(),
        outputs: summary.outputs.iter().map(io).collect(),
        tract,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(elem_type: i32, dims: Option<Vec<Dim>>) -> onnx::Value {
        onnx::Value {
            name: "x".into(),
            elem_type,
            dims,
        }
    }

    #[test]
    fn graph_values_become_manifest_tensors_or_a_reason() {
        let dims = vec![Dim::Symbol("batch".into()), Dim::Size(3), Dim::Unknown];
        let s = spec(&value(1, Some(dims)), "input").unwrap();
        assert_eq!((s.datatype, s.shape), (DataType::Fp32, vec![-1, 3, -1]));
        let e = spec(&value(10, Some(vec![Dim::Size(1)])), "input").unwrap_err();
        assert!(e.contains("is FP16"), "{e}");
        assert!(
            spec(&value(8, Some(vec![Dim::Size(1)])), "input").is_err(),
            "strings"
        );
        let e = spec(&value(1, None), "output").unwrap_err();
        assert!(e.contains("no shape"), "{e}");
        assert!(spec(&value(1, Some(vec![])), "output").is_err(), "a scalar");
    }

    #[test]
    fn the_report_keeps_symbol_names_and_marks_what_is_not_served() {
        let io = io(&value(
            16,
            Some(vec![Dim::Symbol("n".into()), Dim::Size(2)]),
        ));
        assert_eq!((io.datatype, io.served), ("BF16", false));
        assert_eq!(
            serde_json::to_string(&io.dims).unwrap(),
            r#"["n",2]"#.to_string()
        );
        assert_eq!(io.shape, Some(vec![-1, 2]));
    }
}
