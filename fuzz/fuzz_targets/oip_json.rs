//! Open Inference Protocol request decoding (`inferd::oip::decode` for JSON and Triton's
//! binary extension, `inferd::oip::decode_raw` for raw binary requests), as the `/infer`
//! handler calls them but with `model::tensor::Unchecked` as the model check (any name,
//! datatype and shape passes, so the decoders' own bounds are what is tested; a real model
//! only refuses more). Never panics, and:
//! - every decoded tensor holds exactly the elements its shape claims, and no more elements
//!   than the body has bytes;
//! - the heap never grows by more than a small multiple of the body (a claimed shape must
//!   not size an allocation; the allocation guard also aborts on any single allocation above
//!   64 MiB);
//! - re-encoding a decoded request with binary tensor data decodes to the same tensors
//!   (the JSON and binary paths agree).
//!
//! Input: byte 0 picks the framing, the rest is the body:
//! - 0: JSON only (no Inference-Header-Content-Length);
//! - 1: JSON header, a NUL byte, binary data: the NUL is removed and the header length is
//!   where it was (so mutations of the JSON keep the split coherent);
//! - 2: bytes 1..5 are the header length (u32 LE, may exceed the body), then the body;
//! - 3: raw binary request (`Inference-Header-Content-Length: 0`): byte 1 picks one of the
//!   model input specs below, the rest is the body.
#![no_main]

use inferd::model::tensor::{Data, DataType, Tensor, Unchecked, element_count};
use inferd::oip::{InferRequest, decode, decode_raw};
use inferd_fuzz::Peak;
use libfuzzer_sys::fuzz_target;

/// Single-input model specs as manifests declare them: the digits model, and shapes
/// exercising each fixed-width type and the refusals (BYTES, two dynamic axes).
const SPECS: &[(&str, DataType, &[i64])] = &[
    ("input", DataType::Fp32, &[-1, 64]),
    ("text", DataType::Bytes, &[-1]),
    ("x", DataType::Int64, &[-1, 3]),
    ("x", DataType::Int32, &[2, -1]),
    ("x", DataType::Uint8, &[-1]),
    ("x", DataType::Bool, &[1, -1, 2]),
    ("x", DataType::Fp32, &[-1, -1]),
    ("x", DataType::Fp32, &[-1, 8, 8]),
];

/// Heap growth allowed per body byte (serde_json `Value` trees in `parameters` cost up to
/// ~32 bytes per JSON byte, BYTES elements 24), plus a constant.
const PER_BYTE: usize = 128;
const SLACK: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 4 {
        0 => json(rest, None),
        1 => match rest.iter().position(|&b| b == 0) {
            Some(at) => {
                let mut body = rest[..at].to_vec();
                body.extend_from_slice(&rest[at + 1..]);
                json(&body, Some(at));
            }
            None => json(rest, Some(rest.len())),
        },
        2 => {
            if rest.len() >= 4 {
                let n = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
                json(&rest[4..], Some(n));
            }
        }
        _ => {
            let Some((&spec, body)) = rest.split_first() else {
                return;
            };
            let (name, datatype, shape) = SPECS[spec as usize % SPECS.len()];
            let peak = Peak::start();
            let result = decode_raw(body, name, datatype, shape, &Unchecked);
            bounded(&peak, body.len());
            if let Ok(req) = result {
                assert_eq!(req.inputs.len(), 1);
                let t = &req.inputs[0];
                assert_eq!(t.name, name);
                assert_eq!(t.shape.len(), shape.len());
                for (&got, &declared) in t.shape.iter().zip(shape) {
                    if declared >= 0 {
                        assert_eq!(got as i64, declared);
                    }
                }
                let width = datatype.width().expect("raw requests are fixed-width only");
                assert_eq!(t.data.len() * width, body.len(), "every body byte is data");
                consistent(&req, body.len());
                assert!(req.binary_output);
            }
        }
    }
});

fn json(body: &[u8], header_len: Option<usize>) {
    let peak = Peak::start();
    let result = decode(body, header_len, &Unchecked);
    bounded(&peak, body.len());
    let Ok(req) = result else { return };
    consistent(&req, body.len());
    round_trip(&req);
}

fn bounded(peak: &Peak, body_len: usize) {
    let growth = peak.growth();
    assert!(
        growth <= PER_BYTE * body_len + SLACK,
        "decoding {body_len} bytes grew the heap by {growth} bytes"
    );
}

fn consistent(req: &InferRequest, body_len: usize) {
    let mut elements = 0usize;
    for t in &req.inputs {
        assert_eq!(
            element_count(&t.shape),
            Some(t.data.len()),
            "tensor {} shape {:?} holds {} elements",
            t.name,
            t.shape,
            t.data.len()
        );
        elements += t.data.len();
    }
    // Every element takes at least one body byte (JSON digit, binary width, BYTES prefix).
    assert!(elements <= body_len, "{elements} elements from {body_len} bytes");
}

/// Encodes the decoded tensors as a binary-extension request and decodes it again.
fn round_trip(req: &InferRequest) {
    let mut inputs = Vec::new();
    let mut binary = Vec::new();
    for t in &req.inputs {
        let start = binary.len();
        encode(&t.data, &mut binary);
        inputs.push(serde_json::json!({
            "name": t.name,
            "shape": t.shape,
            "datatype": t.data.datatype().as_str(),
            "parameters": { "binary_data_size": binary.len() - start },
        }));
    }
    let mut body = serde_json::to_vec(&serde_json::json!({ "inputs": inputs })).expect("json");
    let header_len = body.len();
    body.extend_from_slice(&binary);
    let again = decode(&body, Some(header_len), &Unchecked).expect("a decoded request re-encodes");
    assert_eq!(again.inputs.len(), req.inputs.len());
    for (a, b) in again.inputs.iter().zip(&req.inputs) {
        assert!(same(a, b), "round trip changed {b:?} into {a:?}");
    }
}

fn same(a: &Tensor, b: &Tensor) -> bool {
    let (mut x, mut y) = (Vec::new(), Vec::new());
    encode(&a.data, &mut x);
    encode(&b.data, &mut y);
    a.name == b.name && a.shape == b.shape && a.data.datatype() == b.data.datatype() && x == y
}

/// Triton's binary tensor layout: little-endian, BYTES with u32 length prefixes.
fn encode(data: &Data, out: &mut Vec<u8>) {
    match data {
        Data::F32(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        Data::I64(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        Data::I32(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        Data::U8(v) => out.extend_from_slice(v),
        Data::Bool(v) => out.extend(v.iter().map(|&b| u8::from(b))),
        Data::Bytes(v) => v.iter().for_each(|b| {
            out.extend_from_slice(&(b.len() as u32).to_le_bytes());
            out.extend_from_slice(b);
        }),
    }
}
