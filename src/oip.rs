//! The Open Inference Protocol (KServe v2) wire format: JSON tensors, and Triton's binary
//! tensor data extension (`Inference-Header-Content-Length`), decoded into our own
//! `Tensor`s and encoded back. Shapes are checked against data before anything is sized
//! from them.

use crate::model::ModelError;
use crate::model::tensor::{Data, DataType, Tensor, element_count};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// An inference request, decoded.
#[derive(Debug)]
pub struct InferRequest {
    pub id: Option<String>,
    pub inputs: Vec<Tensor>,
    /// Outputs the client asked for (all when empty), and whether each wants binary.
    pub outputs: Vec<(String, bool)>,
    /// `parameters.binary_data_output`: every output in binary.
    pub binary_output: bool,
}

#[derive(Deserialize)]
struct RawRequest {
    id: Option<String>,
    #[serde(default)]
    parameters: Map<String, Value>,
    inputs: Vec<RawInput>,
    #[serde(default)]
    outputs: Vec<RawOutput>,
}

#[derive(Deserialize)]
struct RawInput {
    name: String,
    shape: Vec<u64>,
    datatype: String,
    #[serde(default)]
    parameters: Map<String, Value>,
    data: Option<Value>,
}

#[derive(Deserialize)]
struct RawOutput {
    name: String,
    #[serde(default)]
    parameters: Map<String, Value>,
}

fn invalid(message: String) -> ModelError {
    ModelError::invalid("invalid_tensor", message)
}

fn flag(params: &Map<String, Value>, key: &str) -> bool {
    params.get(key).and_then(Value::as_bool).unwrap_or(false)
}

/// Decodes a request body. `header_len` is `Inference-Header-Content-Length` when present:
/// the JSON header is that many bytes, and binary tensor data follows it.
///
/// The caller has checked the body against `max_body_bytes`, so every allocation here is
/// bounded by the body's size, never by a shape the client claims.
pub fn decode(body: &[u8], header_len: Option<usize>) -> Result<InferRequest, ModelError> {
    let (json, mut binary) = match header_len {
        Some(n) if n <= body.len() => body.split_at(n),
        Some(n) => {
            return Err(invalid(format!(
                "Inference-Header-Content-Length {n} exceeds the body"
            )));
        }
        None => (body, &[][..]),
    };
    let raw: RawRequest = serde_json::from_slice(json).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => {
            ModelError::input("invalid_request", format!("inference request: {e}"))
        }
        _ => ModelError::invalid(
            "malformed_json",
            format!("malformed inference request: {e}"),
        ),
    })?;
    let mut inputs = Vec::with_capacity(raw.inputs.len());
    for input in raw.inputs {
        let datatype = DataType::parse(&input.datatype).ok_or_else(|| {
            ModelError::input(
                "wrong_datatype",
                format!(
                    "input {}: unsupported datatype {}",
                    input.name, input.datatype
                ),
            )
        })?;
        let shape: Vec<usize> = input
            .shape
            .iter()
            .map(|&d| {
                usize::try_from(d)
                    .map_err(|_| invalid(format!("input {}: dimension too large", input.name)))
            })
            .collect::<Result<_, _>>()?;
        let count = element_count(&shape).ok_or_else(|| {
            ModelError::invalid(
                "shape_mismatch",
                format!("input {}: shape {shape:?} overflows", input.name),
            )
        })?;
        let data = match (input.parameters.get("binary_data_size"), input.data) {
            (Some(size), None) => {
                let size = size
                    .as_u64()
                    .and_then(|s| usize::try_from(s).ok())
                    .ok_or_else(|| {
                        invalid(format!("input {}: bad binary_data_size", input.name))
                    })?;
                if size > binary.len() {
                    return Err(invalid(format!(
                        "input {}: binary data runs past the body",
                        input.name
                    )));
                }
                let (mine, rest) = binary.split_at(size);
                binary = rest;
                decode_binary(&input.name, datatype, count, mine)?
            }
            (None, Some(value)) => decode_json(&input.name, datatype, count, &value)?,
            _ => {
                return Err(invalid(format!(
                    "input {}: needs either data or binary_data_size",
                    input.name
                )));
            }
        };
        if data.len() != count {
            return Err(ModelError::invalid(
                "shape_mismatch",
                format!(
                    "input {}: shape {shape:?} needs {count} elements, got {}",
                    input.name,
                    data.len()
                ),
            ));
        }
        inputs.push(Tensor {
            name: input.name,
            shape,
            data,
        });
    }
    if !binary.is_empty() {
        return Err(invalid("binary data left over after the last input".into()));
    }
    Ok(InferRequest {
        id: raw.id,
        inputs,
        binary_output: flag(&raw.parameters, "binary_data_output"),
        outputs: raw
            .outputs
            .into_iter()
            .map(|o| {
                let binary = flag(&o.parameters, "binary_data");
                (o.name, binary)
            })
            .collect(),
    })
}

/// Flattens (possibly nested, row-major) JSON data. Stops as soon as it has seen more
/// elements than the shape allows.
fn decode_json(
    name: &str,
    datatype: DataType,
    count: usize,
    value: &Value,
) -> Result<Data, ModelError> {
    let mut leaves: Vec<&Value> = Vec::new();
    let mut stack = vec![value];
    while let Some(v) = stack.pop() {
        match v {
            Value::Array(items) => stack.extend(items.iter().rev()),
            leaf => {
                if leaves.len() == count {
                    return Err(ModelError::invalid(
                        "shape_mismatch",
                        format!("input {name}: more data than its shape holds ({count})"),
                    ));
                }
                leaves.push(leaf);
            }
        }
    }
    let bad = |what: &str| {
        invalid(format!(
            "input {name}: {what} in {} data",
            datatype.as_str()
        ))
    };
    Ok(match datatype {
        DataType::Fp32 => Data::F32(
            leaves
                .iter()
                .map(|v| {
                    v.as_f64()
                        .map(|x| x as f32)
                        .ok_or_else(|| bad("a non-number"))
                })
                .collect::<Result<_, _>>()?,
        ),
        DataType::Int64 => Data::I64(
            leaves
                .iter()
                .map(|v| v.as_i64().ok_or_else(|| bad("a non-integer")))
                .collect::<Result<_, _>>()?,
        ),
        DataType::Int32 => Data::I32(
            leaves
                .iter()
                .map(|v| {
                    v.as_i64()
                        .and_then(|x| i32::try_from(x).ok())
                        .ok_or_else(|| bad("a non-INT32"))
                })
                .collect::<Result<_, _>>()?,
        ),
        DataType::Uint8 => Data::U8(
            leaves
                .iter()
                .map(|v| {
                    v.as_u64()
                        .and_then(|x| u8::try_from(x).ok())
                        .ok_or_else(|| bad("a non-UINT8"))
                })
                .collect::<Result<_, _>>()?,
        ),
        DataType::Bool => Data::Bool(
            leaves
                .iter()
                .map(|v| v.as_bool().ok_or_else(|| bad("a non-boolean")))
                .collect::<Result<_, _>>()?,
        ),
        DataType::Bytes => Data::Bytes(
            leaves
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(|s| s.as_bytes().to_vec())
                        .ok_or_else(|| bad("a non-string"))
                })
                .collect::<Result<_, _>>()?,
        ),
    })
}

/// Decodes little-endian binary tensor data (BYTES: 4-byte little-endian length prefixes).
fn decode_binary(
    name: &str,
    datatype: DataType,
    count: usize,
    bytes: &[u8],
) -> Result<Data, ModelError> {
    if let Some(width) = datatype.width() {
        if Some(bytes.len()) != count.checked_mul(width) {
            return Err(ModelError::invalid(
                "shape_mismatch",
                format!(
                    "input {name}: {} bytes of binary data do not hold {count} {} elements",
                    bytes.len(),
                    datatype.as_str()
                ),
            ));
        }
    }
    macro_rules! le {
        ($t:ty, $n:literal) => {
            bytes
                .chunks_exact($n)
                .map(|c| {
                    let mut a = [0u8; $n];
                    a.copy_from_slice(c);
                    <$t>::from_le_bytes(a)
                })
                .collect()
        };
    }
    Ok(match datatype {
        DataType::Fp32 => Data::F32(le!(f32, 4)),
        DataType::Int64 => Data::I64(le!(i64, 8)),
        DataType::Int32 => Data::I32(le!(i32, 4)),
        DataType::Uint8 => Data::U8(bytes.to_vec()),
        DataType::Bool => Data::Bool(bytes.iter().map(|&b| b != 0).collect()),
        DataType::Bytes => {
            let mut items = Vec::new();
            let mut rest = bytes;
            while !rest.is_empty() {
                if items.len() == count || rest.len() < 4 {
                    return Err(invalid(format!(
                        "input {name}: malformed BYTES binary data"
                    )));
                }
                let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
                rest = &rest[4..];
                if len > rest.len() {
                    return Err(invalid(format!(
                        "input {name}: BYTES element runs past its data"
                    )));
                }
                items.push(rest[..len].to_vec());
                rest = &rest[len..];
            }
            Data::Bytes(items)
        }
    })
}

fn encode_binary(data: &Data, out: &mut Vec<u8>) {
    match data {
        Data::F32(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        Data::I64(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        Data::I32(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        Data::U8(v) => out.extend_from_slice(v),
        Data::Bool(v) => out.extend(v.iter().map(|&b| u8::from(b))),
        Data::Bytes(v) => v.iter().for_each(|b| {
            out.extend_from_slice(&(b.len() as u32).to_le_bytes());
            out.extend_from_slice(b);
        }),
    }
}

fn json_data(data: &Data) -> Value {
    match data {
        Data::F32(v) => serde_json::json!(v),
        Data::I64(v) => serde_json::json!(v),
        Data::I32(v) => serde_json::json!(v),
        Data::U8(v) => serde_json::json!(v),
        Data::Bool(v) => serde_json::json!(v),
        Data::Bytes(v) => Value::Array(
            v.iter()
                .map(|b| Value::String(String::from_utf8_lossy(b).into_owned()))
                .collect(),
        ),
    }
}

#[derive(Serialize)]
struct OutputJson {
    name: String,
    datatype: &'static str,
    shape: Vec<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<Value>,
}

#[derive(Serialize)]
struct ResponseJson<'a> {
    model_name: &'a str,
    model_version: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    outputs: Vec<OutputJson>,
}

/// An encoded inference response: the JSON header, then binary data when any was asked for.
pub struct Encoded {
    pub body: Vec<u8>,
    /// `Some(json_len)` when binary data follows the JSON.
    pub header_len: Option<usize>,
}

/// Encodes outputs, keeping only those requested (all when none were named).
pub fn encode(
    model: &str,
    version: &str,
    req: &InferRequest,
    outputs: Vec<Tensor>,
) -> Result<Encoded, ModelError> {
    for (name, _) in &req.outputs {
        if !outputs.iter().any(|t| &t.name == name) {
            return Err(ModelError::input(
                "unknown_output",
                format!("model has no output {name}"),
            ));
        }
    }
    let mut binary = Vec::new();
    let mut json_outputs = Vec::new();
    for t in outputs {
        let wanted = req.outputs.iter().find(|(n, _)| *n == t.name);
        if !req.outputs.is_empty() && wanted.is_none() {
            continue;
        }
        let as_binary = req.binary_output || wanted.is_some_and(|(_, b)| *b);
        let (parameters, data) = if as_binary {
            let start = binary.len();
            encode_binary(&t.data, &mut binary);
            (
                Some(serde_json::json!({ "binary_data_size": binary.len() - start })),
                None,
            )
        } else {
            (None, Some(json_data(&t.data)))
        };
        json_outputs.push(OutputJson {
            datatype: t.data.datatype().as_str(),
            name: t.name,
            shape: t.shape,
            parameters,
            data,
        });
    }
    let header = ResponseJson {
        model_name: model,
        model_version: version,
        id: req.id.as_deref(),
        outputs: json_outputs,
    };
    let mut body = serde_json::to_vec(&header).map_err(|e| ModelError::Inference(e.to_string()))?;
    let header_len = (!binary.is_empty()).then_some(body.len());
    body.extend_from_slice(&binary);
    Ok(Encoded { body, header_len })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(s: &str) -> Result<InferRequest, ModelError> {
        decode(s.as_bytes(), None)
    }

    #[test]
    fn decodes_flat_and_nested_json() {
        let r = json(
            r#"{"inputs":[{"name":"x","shape":[2,2],"datatype":"FP32","data":[[1,2],[3,4.5]]}]}"#,
        )
        .unwrap();
        assert_eq!(r.inputs[0].data, Data::F32(vec![1.0, 2.0, 3.0, 4.5]));
        let r = json(r#"{"inputs":[{"name":"t","shape":[1],"datatype":"BYTES","data":["hé"]}]}"#)
            .unwrap();
        assert_eq!(
            r.inputs[0].data,
            Data::Bytes(vec!["hé".as_bytes().to_vec()])
        );
    }

    #[test]
    fn shape_and_data_must_agree_without_allocating_from_the_shape() {
        let e = json(r#"{"inputs":[{"name":"x","shape":[2,3],"datatype":"INT64","data":[1,2]}]}"#)
            .unwrap_err();
        assert!(matches!(
            e,
            ModelError::Invalid {
                code: "shape_mismatch",
                ..
            }
        ));
        let huge = r#"{"inputs":[{"name":"x","shape":[4294967296,4294967296,4294967296],"datatype":"FP32","data":[1]}]}"#;
        assert!(matches!(json(huge), Err(ModelError::Invalid { .. })));
        let big =
            r#"{"inputs":[{"name":"x","shape":[1000000000000],"datatype":"FP32","data":[1]}]}"#;
        assert!(matches!(
            json(big),
            Err(ModelError::Invalid {
                code: "shape_mismatch",
                ..
            })
        ));
    }

    #[test]
    fn element_types_are_checked() {
        assert!(
            json(r#"{"inputs":[{"name":"x","shape":[1],"datatype":"UINT8","data":[300]}]}"#)
                .is_err()
        );
        assert!(
            json(r#"{"inputs":[{"name":"x","shape":[1],"datatype":"INT32","data":[1.5]}]}"#)
                .is_err()
        );
        assert!(matches!(
            json(r#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP16","data":[1]}]}"#),
            Err(ModelError::Input {
                code: "wrong_datatype",
                ..
            })
        ));
        let r = json(r#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1e39]}]}"#)
            .unwrap();
        assert!(matches!(&r.inputs[0].data, Data::F32(v) if v[0].is_infinite()));
    }

    #[test]
    fn binary_inputs_and_outputs_round_trip() {
        let header = br#"{"inputs":[{"name":"x","shape":[2],"datatype":"FP32","parameters":{"binary_data_size":8}},{"name":"s","shape":[1],"datatype":"BYTES","parameters":{"binary_data_size":6}}],"outputs":[{"name":"x","parameters":{"binary_data":true}}]}"#;
        let mut body = header.to_vec();
        body.extend_from_slice(&1.5f32.to_le_bytes());
        body.extend_from_slice(&(-2f32).to_le_bytes());
        body.extend_from_slice(&2u32.to_le_bytes());
        body.extend_from_slice(b"hi");
        let r = decode(&body, Some(header.len())).unwrap();
        assert_eq!(r.inputs[0].data, Data::F32(vec![1.5, -2.0]));
        assert_eq!(r.inputs[1].data, Data::Bytes(vec![b"hi".to_vec()]));
        let out = vec![r.inputs[0].clone(), r.inputs[1].clone()];
        let enc = encode("m", "1", &r, out).unwrap();
        let n = enc.header_len.unwrap();
        let head: Value = serde_json::from_slice(&enc.body[..n]).unwrap();
        assert_eq!(head["outputs"].as_array().unwrap().len(), 1);
        assert_eq!(head["outputs"][0]["parameters"]["binary_data_size"], 8);
        assert_eq!(&enc.body[n..n + 4], &1.5f32.to_le_bytes());
    }

    #[test]
    fn binary_framing_errors_are_400() {
        let header = br#"{"inputs":[{"name":"x","shape":[2],"datatype":"FP32","parameters":{"binary_data_size":8}}]}"#;
        let mut body = header.to_vec();
        body.extend_from_slice(&[0u8; 4]);
        assert!(matches!(
            decode(&body, Some(header.len())),
            Err(ModelError::Invalid { .. })
        ));
        assert!(matches!(
            decode(&body, Some(body.len() + 1)),
            Err(ModelError::Invalid { .. })
        ));
    }
}
