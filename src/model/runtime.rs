//! The tract wrapper: the only file that touches tract. An ONNX graph is parsed once, then
//! optimised into one runnable plan per input shape the repository asks for. Plans are
//! `Arc`s run through `&self`, so workers share them without a lock. Without the `inference`
//! feature, `runtime_off.rs` stands in.

use super::tensor::{Data, DataType, Tensor};
use std::sync::Arc;
use tract_onnx::prelude::*;

/// One axis of a plan's input: pinned, or left symbolic (the batch axis of tensor models).
#[derive(Debug, Clone, Copy)]
pub enum Dim {
    Fixed(usize),
    Symbolic(&'static str),
}

/// A parsed, not yet optimised ONNX graph.
pub struct Graph {
    model: InferenceModel,
    /// Input names in graph order.
    pub inputs: Vec<String>,
    /// Output names in graph order.
    pub outputs: Vec<String>,
}

/// An optimised, runnable plan for one set of input shapes.
#[derive(Clone)]
pub struct Plan {
    runnable: Arc<TypedSimplePlan>,
}

impl Graph {
    /// Parses ONNX bytes. Symbolic `value_info` that quantisers leave behind is ignored: it
    /// would contradict the shapes we pin.
    pub fn parse(bytes: &[u8]) -> Result<Graph, String> {
        let model = tract_onnx::onnx()
            .with_ignore_value_info(true)
            .model_for_read(&mut &bytes[..])
            .map_err(|e| format!("{e:#}"))?;
        let name = |o: &OutletId| model.node(o.node).name.clone();
        let inputs = model
            .input_outlets()
            .map_err(|e| e.to_string())?
            .iter()
            .map(name)
            .collect();
        let outputs = model.output_outlets().map_err(|e| e.to_string())?;
        let outputs = outputs
            .iter()
            .map(|o| {
                model
                    .outlet_label(*o)
                    .map(str::to_owned)
                    .unwrap_or_else(|| name(o))
            })
            .collect();
        Ok(Graph {
            model,
            inputs,
            outputs,
        })
    }

    /// The nodes tract parsed but has no implementation for, as (node name, ONNX operator):
    /// a graph with any cannot be optimised. (Subgraphs of If/Loop/Scan are not searched;
    /// an operator missing there shows in the error of [`Graph::plan`].)
    pub fn unsupported(&self) -> Vec<(String, String)> {
        use tract_onnx::tract_core::ops::unimpl::UnimplementedOp;
        self.model
            .nodes()
            .iter()
            .filter(|node| node.op_is::<UnimplementedOp>())
            .map(|node| {
                let op = node.op.name();
                let op = op
                    .strip_prefix("Unimplemented(")
                    .and_then(|o| o.strip_suffix(')'))
                    .unwrap_or(&op);
                (node.name.clone(), op.to_owned())
            })
            .collect()
    }

    /// Pins input types and shapes (in graph order), optimises, and makes a runnable plan.
    pub fn plan(&self, shapes: &[(DataType, Vec<Dim>)]) -> Result<Plan, String> {
        let mut model = self.model.clone();
        for (i, (datatype, dims)) in shapes.iter().enumerate() {
            let dims: TVec<TDim> = dims
                .iter()
                .map(|d| match d {
                    Dim::Fixed(n) => n.to_dim(),
                    Dim::Symbolic(s) => model.sym(s).to_dim(),
                })
                .collect();
            let fact = InferenceFact::dt_shape(datum_type(*datatype)?, dims);
            model
                .set_input_fact(i, fact)
                .map_err(|e| format!("{e:#}"))?;
        }
        let runnable = model
            .into_optimized()
            .and_then(|m| m.into_runnable())
            .map_err(|e| format!("{e:#}"))?;
        Ok(Plan { runnable })
    }
}

fn datum_type(datatype: DataType) -> Result<DatumType, String> {
    Ok(match datatype {
        DataType::Fp32 => f32::datum_type(),
        DataType::Int64 => i64::datum_type(),
        DataType::Int32 => i32::datum_type(),
        DataType::Uint8 => u8::datum_type(),
        DataType::Bool => bool::datum_type(),
        DataType::Bytes => return Err("BYTES cannot be a graph input".into()),
    })
}

fn to_tract(t: Tensor) -> Result<TValue, String> {
    let shape = &t.shape;
    let tensor = match &t.data {
        Data::F32(v) => tract_onnx::prelude::Tensor::from_shape(shape, v),
        Data::I64(v) => tract_onnx::prelude::Tensor::from_shape(shape, v),
        Data::I32(v) => tract_onnx::prelude::Tensor::from_shape(shape, v),
        Data::U8(v) => tract_onnx::prelude::Tensor::from_shape(shape, v),
        Data::Bool(v) => tract_onnx::prelude::Tensor::from_shape(shape, v),
        Data::Bytes(_) => return Err("BYTES cannot be a graph input".into()),
    };
    tensor.map(Into::into).map_err(|e| format!("{e:#}"))
}

fn from_tract(name: &str, t: &tract_onnx::prelude::Tensor) -> Result<Tensor, String> {
    fn flat<T: Datum + Copy>(t: &tract_onnx::prelude::Tensor) -> Result<Vec<T>, String> {
        let view = t.to_plain_array_view::<T>().map_err(|e| format!("{e:#}"))?;
        Ok(view.iter().copied().collect())
    }
    let dt = t.datum_type();
    let data = if dt == f32::datum_type() {
        Data::F32(flat(t)?)
    } else if dt == i64::datum_type() {
        Data::I64(flat(t)?)
    } else if dt == i32::datum_type() {
        Data::I32(flat(t)?)
    } else if dt == u8::datum_type() {
        Data::U8(flat(t)?)
    } else if dt == bool::datum_type() {
        Data::Bool(flat(t)?)
    } else if dt == TDim::datum_type() {
        // tract computes some integer outputs (an ArgMax feeding a label, shapes) as
        // dimensions; concrete ones are plain INT64 to a client.
        let ints = t
            .cast_to::<i64>()
            .map_err(|e| format!("output {name}: {e:#}"))?;
        Data::I64(flat(&ints)?)
    } else {
        return Err(format!("output {name} has unsupported type {dt:?}"));
    };
    Ok(Tensor {
        name: name.to_owned(),
        shape: t.shape().to_vec(),
        data,
    })
}

impl Plan {
    /// The matrix-multiply kernels tract chose for this plan (one name per kernel, as
    /// tract-linalg names them), each with the number of graph nodes that run on it.
    pub fn kernels(&self) -> Vec<(String, usize)> {
        use tract_onnx::tract_core::ops::matmul::optimized::OptMatMul;
        let mut found = std::collections::BTreeMap::<String, usize>::new();
        for node in self.runnable.model().nodes() {
            if let Some(op) = node.op_as::<OptMatMul>() {
                for mmm in &op.mmm {
                    *found.entry(mmm.name().to_owned()).or_default() += 1;
                }
            }
        }
        found.into_iter().collect()
    }

    /// Runs the plan on inputs in graph order; outputs come back in graph order, named.
    pub fn run(&self, inputs: Vec<Tensor>, output_names: &[String]) -> Result<Vec<Tensor>, String> {
        let inputs: TVec<TValue> = inputs.into_iter().map(to_tract).collect::<Result<_, _>>()?;
        let outputs = self.runnable.run(inputs).map_err(|e| format!("{e:#}"))?;
        outputs
            .iter()
            .zip(output_names)
            .map(|(t, name)| from_tract(name, t))
            .collect()
    }
}
