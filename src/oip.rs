//! The Open Inference Protocol (KServe v2) wire format: JSON tensors, and Triton's binary
//! tensor data extension (`Inference-Header-Content-Length`), decoded into our own
//! `Tensor`s and encoded back. Shapes are checked against data before anything is sized
//! from them.

use crate::model::ModelError;
use crate::model::tensor::{Data, DataType, InputCheck, Tensor, element_count};
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::marker::PhantomData;
use std::time::Duration;

/// An inference request, decoded.
#[derive(Debug)]
pub struct InferRequest {
    pub id: Option<String>,
    pub inputs: Vec<Tensor>,
    /// Outputs the client asked for (all when empty), and whether each wants binary when it
    /// says so (`parameters.binary_data`, which overrides `binary_output`).
    pub outputs: Vec<(String, Option<bool>)>,
    /// `parameters.binary_data_output`: every output in binary.
    pub binary_output: bool,
    /// `parameters.timeout` (Triton's schedule-policy extension, microseconds): the most
    /// the request will wait to start; absent or 0, the server's queue timeout.
    pub timeout: Option<Duration>,
}

/// Most inputs, outputs and dimensions a request may list: far above any model's, and
/// checked while decoding, so that a list of a million empty entries is refused after 64.
const MAX_TENSORS: usize = 64;
const MAX_RANK: usize = 16;

#[derive(Deserialize)]
struct RawRequest<'a> {
    id: Option<String>,
    #[serde(default)]
    parameters: Params,
    #[serde(borrow)]
    inputs: Capped<RawInput<'a>, MAX_TENSORS>,
    #[serde(default)]
    outputs: Capped<RawOutput, MAX_TENSORS>,
}

#[derive(Deserialize)]
struct RawInput<'a> {
    name: String,
    shape: Capped<u64, MAX_RANK>,
    datatype: String,
    #[serde(default)]
    parameters: Params,
    /// Kept as raw JSON text until datatype and shape are known, then streamed into a
    /// typed vector (a `Value` tree would cost ~48 bytes per element).
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct RawOutput {
    name: String,
    #[serde(default)]
    parameters: Params,
}

/// A JSON array of at most `N` elements, refused as soon as element `N + 1` starts.
struct Capped<T, const N: usize>(Vec<T>);

impl<T, const N: usize> Default for Capped<T, N> {
    fn default() -> Self {
        Capped(Vec::new())
    }
}

impl<'de, T: Deserialize<'de>, const N: usize> Deserialize<'de> for Capped<T, N> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Items<T, const N: usize>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>, const N: usize> Visitor<'de> for Items<T, N> {
            type Value = Capped<T, N>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                write!(f, "an array of at most {N} elements")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    if items.len() == N {
                        return Err(de::Error::custom(format!("more than {N} elements")));
                    }
                    items.push(item);
                }
                Ok(Capped(items))
            }
        }
        deserializer.deserialize_seq(Items::<T, N>(PhantomData))
    }
}

/// A `parameters` object: only the keys inferd reads, as scalars. Every other key and
/// value is skipped without being built (a `serde_json::Value` of a large object costs
/// tens of bytes per byte of JSON); a value of the wrong type reads as absent.
#[derive(Default)]
struct Params {
    binary_data_output: Option<bool>,
    binary_data: Option<bool>,
    binary_data_size: Option<Scalar>,
    timeout: Option<Scalar>,
}

/// A parameter value: the scalars inferd acts on, or something else (skipped).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Scalar {
    Bool(bool),
    Uint(u64),
    Other,
}

impl Scalar {
    fn as_bool(self) -> Option<bool> {
        match self {
            Scalar::Bool(b) => Some(b),
            _ => None,
        }
    }
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a parameter value")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar::Bool(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar::Uint(v))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Scalar, E> {
                Ok(Scalar::Other)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Scalar, E> {
                Ok(Scalar::Other)
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Scalar, E> {
                Ok(Scalar::Other)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Scalar, E> {
                Ok(Scalar::Other)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Scalar, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Scalar::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Scalar, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Scalar::Other)
            }
        }
        deserializer.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for Params {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Params;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a parameters object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Params, A::Error> {
                let mut params = Params::default();
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    match key.as_ref() {
                        "binary_data_output" => {
                            params.binary_data_output = map.next_value::<Scalar>()?.as_bool();
                        }
                        "binary_data" => params.binary_data = map.next_value::<Scalar>()?.as_bool(),
                        "binary_data_size" => params.binary_data_size = Some(map.next_value()?),
                        "timeout" => params.timeout = Some(map.next_value()?),
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(params)
            }
        }
        deserializer.deserialize_map(V)
    }
}

/// `parameters.timeout`: microseconds as a non-negative integer; 0 means the default.
fn timeout(value: Option<Scalar>) -> Result<Option<Duration>, ModelError> {
    match value {
        None | Some(Scalar::Uint(0)) => Ok(None),
        Some(Scalar::Uint(us)) => Ok(Some(Duration::from_micros(us))),
        Some(_) => Err(ModelError::invalid(
            "invalid_parameter",
            "parameters.timeout must be a whole number of microseconds (0: the server's default)"
                .into(),
        )),
    }
}

fn invalid(message: String) -> ModelError {
    ModelError::invalid("invalid_tensor", message)
}

/// Decodes a request body. `header_len` is `Inference-Header-Content-Length` when present:
/// the JSON header is that many bytes, and binary tensor data follows it.
///
/// Each input's name, datatype and shape are checked against `model` before its data is
/// decoded, so no element beyond what the model takes is parsed or stored; with any model,
/// every allocation here is bounded by the body's size, never by a shape the client claims.
pub fn decode(
    body: &[u8],
    header_len: Option<usize>,
    model: &dyn InputCheck,
) -> Result<InferRequest, ModelError> {
    let (json, mut binary) = match header_len {
        Some(n) if n <= body.len() => body.split_at(n),
        Some(n) => {
            return Err(invalid(format!(
                "Inference-Header-Content-Length {n} exceeds the body"
            )));
        }
        None => (body, &[][..]),
    };
    let raw: RawRequest = serde_json::from_slice(json).map_err(json_error)?;
    let mut inputs = Vec::with_capacity(raw.inputs.0.len());
    for input in raw.inputs.0 {
        inputs.push(decode_input(input, &mut binary, model)?);
    }
    if !binary.is_empty() {
        return Err(invalid("binary data left over after the last input".into()));
    }
    Ok(InferRequest {
        id: raw.id,
        inputs,
        timeout: timeout(raw.parameters.timeout)?,
        binary_output: raw.parameters.binary_data_output.unwrap_or(false),
        outputs: raw
            .outputs
            .0
            .into_iter()
            .map(|o| (o.name, o.parameters.binary_data))
            .collect(),
    })
}

/// A JSON header that is not JSON (400), or not an inference request (422).
fn json_error(e: serde_json::Error) -> ModelError {
    match e.classify() {
        serde_json::error::Category::Data => {
            ModelError::input("invalid_request", format!("inference request: {e}"))
        }
        _ => ModelError::invalid(
            "malformed_json",
            format!("malformed inference request: {e}"),
        ),
    }
}

/// One input: its datatype and shape checked against the model, then its data, from the
/// JSON or from the front of `binary` (which it consumes).
fn decode_input(
    input: RawInput<'_>,
    binary: &mut &[u8],
    model: &dyn InputCheck,
) -> Result<Tensor, ModelError> {
    let datatype = DataType::parse(&input.datatype).ok_or_else(|| {
        let message = format!(
            "input {}: unsupported datatype {}",
            input.name, input.datatype
        );
        ModelError::input("wrong_datatype", message)
    })?;
    let shape: Vec<usize> = input
        .shape
        .0
        .iter()
        .map(|&d| {
            usize::try_from(d)
                .map_err(|_| invalid(format!("input {}: dimension too large", input.name)))
        })
        .collect::<Result<_, _>>()?;
    let count = element_count(&shape).ok_or_else(|| {
        let message = format!("input {}: shape {shape:?} overflows", input.name);
        ModelError::invalid("shape_mismatch", message)
    })?;
    model.check_input(&input.name, datatype, &shape)?;
    let data = match (input.parameters.binary_data_size, input.data) {
        (Some(size), None) => {
            let mine = take_binary(&input.name, size, binary)?;
            decode_binary(&input.name, datatype, count, mine)?
        }
        (None, Some(raw)) => decode_json(&input.name, datatype, count, raw)?,
        _ => {
            let message = format!(
                "input {}: needs either data or binary_data_size",
                input.name
            );
            return Err(invalid(message));
        }
    };
    if data.len() != count {
        let message = format!(
            "input {}: shape {shape:?} needs {count} elements, got {}",
            input.name,
            data.len()
        );
        return Err(ModelError::invalid("shape_mismatch", message));
    }
    Ok(Tensor {
        name: input.name,
        shape,
        data,
    })
}

/// The next `size` bytes of the binary section, for input `name`.
fn take_binary<'b>(
    name: &str,
    size: Scalar,
    binary: &mut &'b [u8],
) -> Result<&'b [u8], ModelError> {
    let size = match size {
        Scalar::Uint(n) => usize::try_from(n).ok(),
        _ => None,
    }
    .ok_or_else(|| invalid(format!("input {name}: bad binary_data_size")))?;
    if size > binary.len() {
        return Err(invalid(format!(
            "input {name}: binary data runs past the body"
        )));
    }
    let (mine, rest) = binary.split_at(size);
    *binary = rest;
    Ok(mine)
}

/// Decodes Triton's "raw binary request" (`Inference-Header-Content-Length: 0`): the whole
/// body is the little-endian data of the model's only input, whose one dynamic axis is
/// inferred from the body size. Every output comes back in binary.
pub fn decode_raw(
    body: &[u8],
    name: &str,
    datatype: DataType,
    shape: &[i64],
    model: &dyn InputCheck,
) -> Result<InferRequest, ModelError> {
    let unsupported = || {
        ModelError::invalid(
            "raw_binary_unsupported",
            "a raw binary request needs a model with one fixed-width input and one dynamic axis"
                .into(),
        )
    };
    let width = datatype.width().ok_or_else(unsupported)?;
    if shape.iter().filter(|&&d| d == -1).count() != 1 {
        return Err(unsupported());
    }
    // A manifest's fixed dimensions could multiply past usize (or to zero): refuse rather
    // than overflow or divide by zero.
    let fixed = shape
        .iter()
        .filter(|&&d| d > 0)
        .try_fold(1usize, |acc, &d| acc.checked_mul(d as usize))
        .ok_or_else(unsupported)?;
    let row_bytes = fixed
        .checked_mul(width)
        .filter(|&b| b > 0)
        .ok_or_else(unsupported)?;
    if body.is_empty() || !body.len().is_multiple_of(row_bytes) {
        return Err(ModelError::invalid(
            "shape_mismatch",
            format!(
                "raw binary body of {} bytes is not a whole number of {row_bytes}-byte rows",
                body.len()
            ),
        ));
    }
    let dynamic = body.len() / row_bytes;
    let dims: Vec<usize> = shape
        .iter()
        .map(|&d| if d == -1 { dynamic } else { d as usize })
        .collect();
    let count = dynamic * fixed;
    model.check_input(name, datatype, &dims)?;
    let data = decode_binary(name, datatype, count, body)?;
    Ok(InferRequest {
        id: None,
        inputs: vec![Tensor {
            name: name.to_owned(),
            shape: dims,
            data,
        }],
        outputs: Vec::new(),
        binary_output: true,
        timeout: None,
    })
}

const TOO_MUCH: &str = "more data than its shape holds";

/// Parses (possibly nested, row-major) JSON tensor data straight into a typed vector,
/// stopping at the first element beyond `count`.
fn decode_json(
    name: &str,
    datatype: DataType,
    count: usize,
    raw: &RawValue,
) -> Result<Data, ModelError> {
    // Every element takes at least two bytes of JSON ("1,"), so this bounds the allocation
    // by the body, whatever the shape claims.
    let room = count.min(raw.get().len() / 2 + 1);
    let mut data = match datatype {
        DataType::Fp32 => Data::F32(Vec::with_capacity(room)),
        DataType::Int64 => Data::I64(Vec::with_capacity(room)),
        DataType::Int32 => Data::I32(Vec::with_capacity(room)),
        DataType::Uint8 => Data::U8(Vec::with_capacity(room)),
        DataType::Bool => Data::Bool(Vec::with_capacity(room)),
        DataType::Bytes => Data::Bytes(Vec::with_capacity(room)),
    };
    let mut de = serde_json::Deserializer::from_str(raw.get());
    Sink {
        out: &mut data,
        cap: count,
    }
    .deserialize(&mut de)
    .and_then(|()| de.end())
    .map_err(|e| {
        let code = if e.to_string().contains(TOO_MUCH) {
            "shape_mismatch"
        } else {
            "invalid_tensor"
        };
        ModelError::invalid(code, format!("input {name}: {e}"))
    })?;
    Ok(data)
}

/// A `DeserializeSeed` that appends every leaf of nested JSON arrays to a typed vector.
struct Sink<'a> {
    out: &'a mut Data,
    cap: usize,
}

/// One JSON scalar, before conversion to the tensor's type.
enum Leaf<'s> {
    Bool(bool),
    Int(i64),
    Uint(u64),
    Float(f64),
    Str(&'s str),
}

impl Sink<'_> {
    fn push<E: de::Error>(self, leaf: Leaf<'_>) -> Result<(), E> {
        if self.out.len() >= self.cap {
            return Err(E::custom(TOO_MUCH));
        }
        let datatype = self.out.datatype();
        let wrong = || E::custom(format!("a value that is not {}", datatype.as_str()));
        match (self.out, leaf) {
            (Data::F32(v), Leaf::Int(x)) => v.push(x as f32),
            (Data::F32(v), Leaf::Uint(x)) => v.push(x as f32),
            (Data::F32(v), Leaf::Float(x)) => v.push(x as f32),
            (Data::I64(v), Leaf::Int(x)) => v.push(x),
            (Data::I64(v), Leaf::Uint(x)) => v.push(i64::try_from(x).map_err(|_| wrong())?),
            (Data::I32(v), Leaf::Int(x)) => v.push(i32::try_from(x).map_err(|_| wrong())?),
            (Data::I32(v), Leaf::Uint(x)) => v.push(i32::try_from(x).map_err(|_| wrong())?),
            (Data::U8(v), Leaf::Int(x)) => v.push(u8::try_from(x).map_err(|_| wrong())?),
            (Data::U8(v), Leaf::Uint(x)) => v.push(u8::try_from(x).map_err(|_| wrong())?),
            (Data::Bool(v), Leaf::Bool(b)) => v.push(b),
            (Data::Bytes(v), Leaf::Str(s)) => v.push(s.as_bytes().to_vec()),
            _ => return Err(wrong()),
        }
        Ok(())
    }
}

impl<'de> DeserializeSeed<'de> for Sink<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Sink<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "an array of {} values", self.out.datatype().as_str())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Sink { out, cap } = self;
        while seq
            .next_element_seed(Sink {
                out: &mut *out,
                cap,
            })?
            .is_some()
        {}
        Ok(())
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.push(Leaf::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.push(Leaf::Int(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.push(Leaf::Uint(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.push(Leaf::Float(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.push(Leaf::Str(v))
    }
}

/// Decodes little-endian binary tensor data (BYTES: 4-byte little-endian length prefixes).
fn decode_binary(
    name: &str,
    datatype: DataType,
    count: usize,
    bytes: &[u8],
) -> Result<Data, ModelError> {
    if let Some(width) = datatype.width()
        && Some(bytes.len()) != count.checked_mul(width)
    {
        return Err(ModelError::invalid(
            "shape_mismatch",
            format!(
                "input {name}: {} bytes of binary data do not hold {count} {} elements",
                bytes.len(),
                datatype.as_str()
            ),
        ));
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
    let mut any_binary = false;
    let mut json_outputs = Vec::new();
    for t in outputs {
        let wanted = req.outputs.iter().find(|(n, _)| *n == t.name);
        if !req.outputs.is_empty() && wanted.is_none() {
            continue;
        }
        let as_binary = wanted.and_then(|(_, b)| *b).unwrap_or(req.binary_output);
        any_binary |= as_binary;
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
    let header_len = any_binary.then_some(body.len());
    body.extend_from_slice(&binary);
    Ok(Encoded { body, header_len })
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::model::tensor::Unchecked;

    fn json(s: &str) -> Result<InferRequest, ModelError> {
        decode(s.as_bytes(), None, &Unchecked)
    }

    #[test]
    fn unknown_parameters_are_skipped_and_odd_values_read_as_absent() {
        let r = json(
            r#"{"parameters":{"x":{"deep":[[[1,2],{"a":null}]]},"binary_data_output":"yes"},
                "inputs":[{"name":"x","shape":[1],"datatype":"INT64","data":[7],
                           "parameters":{"shared_memory_region":"r","n":-1.5}}],
                "outputs":[{"name":"y","parameters":{"binary_data":true,"z":[1,2,3]}}]}"#,
        )
        .unwrap();
        assert!(!r.binary_output);
        assert_eq!(r.outputs, vec![("y".to_owned(), Some(true))]);
        assert_eq!(r.inputs[0].data, Data::I64(vec![7]));
    }

    #[test]
    fn the_timeout_parameter_is_microseconds_and_zero_means_the_default() {
        let with = |t: &str| {
            json(&format!(
                r#"{{"parameters":{{"timeout":{t}}},"inputs":[{{"name":"x","shape":[1],"datatype":"INT64","data":[7]}}]}}"#
            ))
        };
        assert_eq!(
            with("250000").unwrap().timeout,
            Some(Duration::from_millis(250))
        );
        assert_eq!(with("0").unwrap().timeout, None);
        for bad in ["-1", "1.5", "\"5s\"", "null", "[1]"] {
            let e = with(bad).unwrap_err();
            assert!(
                matches!(
                    e,
                    ModelError::Invalid {
                        code: "invalid_parameter",
                        ..
                    }
                ),
                "{bad}: {e:?}"
            );
        }
        let none = json(r#"{"inputs":[{"name":"x","shape":[1],"datatype":"INT64","data":[7]}]}"#);
        assert_eq!(none.unwrap().timeout, None);
    }

    #[test]
    fn lists_of_inputs_outputs_and_dims_are_capped_while_decoding() {
        let input = r#"{"name":"x","shape":[1],"datatype":"INT64","data":[1]}"#;
        let many = vec![input; MAX_TENSORS + 1].join(",");
        let e = json(&format!(r#"{{"inputs":[{many}]}}"#)).unwrap_err();
        assert!(e.to_string().contains("more than 64"), "{e}");
        let outputs = vec![r#"{"name":"y"}"#; MAX_TENSORS + 1].join(",");
        assert!(json(&format!(r#"{{"inputs":[],"outputs":[{outputs}]}}"#)).is_err());
        let dims = vec!["1"; MAX_RANK + 1].join(",");
        let deep = format!(
            r#"{{"inputs":[{{"name":"x","shape":[{dims}],"datatype":"INT64","data":[1]}}]}}"#
        );
        assert!(json(&deep).is_err());
    }

    /// Takes input "x" of at most 2 elements, refusing anything else by name or shape.
    struct Two;

    impl InputCheck for Two {
        fn check_input(&self, name: &str, _: DataType, shape: &[usize]) -> Result<(), ModelError> {
            match (name, element_count(shape)) {
                ("x", Some(n)) if n <= 2 => Ok(()),
                _ => Err(ModelError::input(
                    "wrong_shape",
                    format!("{name} {shape:?}"),
                )),
            }
        }
    }

    #[test]
    fn the_model_is_asked_before_any_element_is_decoded() {
        let ok = r#"{"inputs":[{"name":"x","shape":[2],"datatype":"INT64","data":[1,2]}]}"#;
        assert!(decode(ok.as_bytes(), None, &Two).is_ok());
        // Malformed data after a shape the model refuses: the model's answer comes first,
        // so the data was never read.
        let big = r#"{"inputs":[{"name":"x","shape":[3],"datatype":"INT64","data":[1,2,"no"]}]}"#;
        assert!(matches!(
            decode(big.as_bytes(), None, &Two),
            Err(ModelError::Input {
                code: "wrong_shape",
                ..
            })
        ));
        let raw: Vec<u8> = (0..3i64).flat_map(|i| i.to_le_bytes()).collect();
        assert!(decode_raw(&raw, "x", DataType::Int64, &[-1], &Two).is_err());
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
        let r = decode(&body, Some(header.len()), &Unchecked).unwrap();
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
    fn per_output_binary_flag_overrides_the_request_default() {
        let r = json(r#"{"parameters":{"binary_data_output":true},"inputs":[],"outputs":[{"name":"a","parameters":{"binary_data":false}},{"name":"b"}]}"#).unwrap();
        let t = |name: &str| Tensor {
            name: name.into(),
            shape: vec![1],
            data: Data::F32(vec![1.0]),
        };
        let enc = encode("m", "1", &r, vec![t("a"), t("b")]).unwrap();
        let head: Value = serde_json::from_slice(&enc.body[..enc.header_len.unwrap()]).unwrap();
        assert_eq!(head["outputs"][0]["data"], serde_json::json!([1.0]));
        assert_eq!(head["outputs"][1]["parameters"]["binary_data_size"], 4);
    }

    #[test]
    fn raw_binary_request_infers_the_dynamic_axis() {
        let body: Vec<u8> = (0..6).flat_map(|i| (i as f32).to_le_bytes()).collect();
        let r = decode_raw(&body, "x", DataType::Fp32, &[-1, 3], &Unchecked).unwrap();
        assert_eq!(r.inputs[0].shape, vec![2, 3]);
        assert!(r.binary_output);
        assert!(decode_raw(&body[..5], "x", DataType::Fp32, &[-1, 3], &Unchecked).is_err());
        assert!(decode_raw(&body, "x", DataType::Bytes, &[-1], &Unchecked).is_err());
        assert!(decode_raw(&body, "x", DataType::Fp32, &[-1, -1], &Unchecked).is_err());
    }

    #[test]
    fn binary_framing_errors_are_400() {
        let header = br#"{"inputs":[{"name":"x","shape":[2],"datatype":"FP32","parameters":{"binary_data_size":8}}]}"#;
        let mut body = header.to_vec();
        body.extend_from_slice(&[0u8; 4]);
        assert!(matches!(
            decode(&body, Some(header.len()), &Unchecked),
            Err(ModelError::Invalid { .. })
        ));
        assert!(matches!(
            decode(&body, Some(body.len() + 1), &Unchecked),
            Err(ModelError::Invalid { .. })
        ));
    }
}
