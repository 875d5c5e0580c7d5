//! Our own tensor type: what crosses between the protocol decoders and the runtime. tract's
//! tensors stay inside `runtime.rs`.

use super::ModelError;
use serde::{Deserialize, Serialize};

/// Tensor element types of the Open Inference Protocol that inferd accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DataType {
    #[serde(rename = "FP32")]
    Fp32,
    #[serde(rename = "INT64")]
    Int64,
    #[serde(rename = "INT32")]
    Int32,
    #[serde(rename = "UINT8")]
    Uint8,
    #[serde(rename = "BOOL")]
    Bool,
    #[serde(rename = "BYTES")]
    Bytes,
}

impl DataType {
    /// The protocol's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            DataType::Fp32 => "FP32",
            DataType::Int64 => "INT64",
            DataType::Int32 => "INT32",
            DataType::Uint8 => "UINT8",
            DataType::Bool => "BOOL",
            DataType::Bytes => "BYTES",
        }
    }

    /// Parses a protocol name; `None` for types inferd does not serve.
    pub fn parse(s: &str) -> Option<DataType> {
        Some(match s {
            "FP32" => DataType::Fp32,
            "INT64" => DataType::Int64,
            "INT32" => DataType::Int32,
            "UINT8" => DataType::Uint8,
            "BOOL" => DataType::Bool,
            "BYTES" => DataType::Bytes,
            _ => return None,
        })
    }

    /// Bytes per element in the binary tensor encoding (`None` for BYTES, which is
    /// length-prefixed).
    pub fn width(self) -> Option<usize> {
        match self {
            DataType::Fp32 | DataType::Int32 => Some(4),
            DataType::Int64 => Some(8),
            DataType::Uint8 | DataType::Bool => Some(1),
            DataType::Bytes => None,
        }
    }
}

/// Typed, flat, row-major element storage.
#[derive(Debug, Clone, PartialEq)]
pub enum Data {
    F32(Vec<f32>),
    I64(Vec<i64>),
    I32(Vec<i32>),
    U8(Vec<u8>),
    Bool(Vec<bool>),
    Bytes(Vec<Vec<u8>>),
}

impl Data {
    pub fn len(&self) -> usize {
        match self {
            Data::F32(v) => v.len(),
            Data::I64(v) => v.len(),
            Data::I32(v) => v.len(),
            Data::U8(v) => v.len(),
            Data::Bool(v) => v.len(),
            Data::Bytes(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn datatype(&self) -> DataType {
        match self {
            Data::F32(_) => DataType::Fp32,
            Data::I64(_) => DataType::Int64,
            Data::I32(_) => DataType::Int32,
            Data::U8(_) => DataType::Uint8,
            Data::Bool(_) => DataType::Bool,
            Data::Bytes(_) => DataType::Bytes,
        }
    }
}

/// A named tensor. Invariant (checked by every constructor in the decoders): the product of
/// `shape` equals `data.len()`.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Data,
}

/// The element count a shape claims, or `None` on overflow. Never allocates.
pub fn element_count(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

/// What a model takes, asked while a request is decoded: before an input's data is read,
/// whether the model has an input by that name, of that datatype, in that shape (batch cap
/// included). Decoding then never parses or stores an element the model would not take.
pub trait InputCheck {
    fn check_input(
        &self,
        name: &str,
        datatype: DataType,
        shape: &[usize],
    ) -> Result<(), ModelError>;
}

/// Takes any input: decoding is then bounded by the body's size alone (fuzzing, benches).
pub struct Unchecked;

impl InputCheck for Unchecked {
    fn check_input(&self, _: &str, _: DataType, _: &[usize]) -> Result<(), ModelError> {
        Ok(())
    }
}
