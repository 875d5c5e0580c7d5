//! A small reader of ONNX's protobuf (`ModelProto`), independent of tract: what a file
//! declares (inputs, outputs, opsets) and every tensor it keeps in another file. Works in
//! builds without the `inference` feature; nesting is bounded and tensor data is skipped,
//! never copied.

use serde::Serialize;

/// How deep graphs may nest (If/Loop/Scan bodies in attributes) before a file is refused:
/// far above real models, far below a stack overflow.
const MAX_DEPTH: usize = 32;

/// What an ONNX file declares about itself.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    pub ir_version: i64,
    /// `producer_name producer_version`, as the exporter wrote them.
    pub producer: String,
    pub opsets: Vec<Opset>,
    /// The main graph's inputs that no initializer feeds, in graph order.
    pub inputs: Vec<Value>,
    /// The main graph's outputs, in graph order.
    pub outputs: Vec<Value>,
    /// Nodes of the main graph (subgraphs not counted).
    pub nodes: usize,
    /// Every tensor, in any graph, function or attribute, that names an external file.
    pub external: Vec<External>,
}

/// An operator set the model imports (`""` is the default ONNX domain).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Opset {
    pub domain: String,
    pub version: i64,
}

/// A graph input or output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Value {
    pub name: String,
    /// ONNX `TensorProto.DataType` (1 float, 7 int64, ...); 0 when not a tensor or unset.
    pub elem_type: i32,
    /// `None` when the rank is not declared.
    pub dims: Option<Vec<Dim>>,
}

/// One axis of a declared shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dim {
    Size(i64),
    /// A named symbolic axis (`dim_param`), e.g. `batch`.
    Symbol(String),
    Unknown,
}

/// A tensor whose data lives outside the `.onnx` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct External {
    pub tensor: String,
    /// The `location` entry: a path relative to the model's folder (`None`: missing).
    pub location: Option<String>,
}

/// The ONNX type name as the Open Inference Protocol spells it (`FP32`, `INT64`, ...), for
/// every ONNX tensor type: inferd serves only some of them (see `tensor::DataType`).
pub fn oip_name(elem_type: i32) -> &'static str {
    match elem_type {
        1 => "FP32",
        2 => "UINT8",
        3 => "INT8",
        4 => "UINT16",
        5 => "INT16",
        6 => "INT32",
        7 => "INT64",
        8 => "BYTES",
        9 => "BOOL",
        10 => "FP16",
        11 => "FP64",
        12 => "UINT32",
        13 => "UINT64",
        16 => "BF16",
        0 => "UNDEFINED",
        _ => "UNSUPPORTED",
    }
}

/// One field of a protobuf message.
enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

/// Iterates the fields of one message's bytes.
struct Fields<'a> {
    buf: &'a [u8],
}

fn varint(buf: &mut &[u8]) -> Result<u64, String> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = buf.split_first().ok_or("truncated varint")?;
        *buf = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err("varint longer than 10 bytes".into())
}

fn take<'a>(buf: &mut &'a [u8], n: u64) -> Result<&'a [u8], String> {
    let n = usize::try_from(n).map_err(|_| "length out of range")?;
    if n > buf.len() {
        return Err(format!(
            "field of {n} bytes runs past its message ({} left)",
            buf.len()
        ));
    }
    let (head, rest) = buf.split_at(n);
    *buf = rest;
    Ok(head)
}

impl<'a> Fields<'a> {
    fn next_field(&mut self) -> Result<Option<(u64, Field<'a>)>, String> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        let key = varint(&mut self.buf)?;
        let (number, wire) = (key >> 3, key & 7);
        if number == 0 {
            return Err("field number 0".into());
        }
        let field = match wire {
            0 => Field::Varint(varint(&mut self.buf)?),
            1 => take(&mut self.buf, 8).map(|_| Field::Fixed)?,
            2 => {
                let len = varint(&mut self.buf)?;
                Field::Bytes(take(&mut self.buf, len)?)
            }
            5 => take(&mut self.buf, 4).map(|_| Field::Fixed)?,
            other => return Err(format!("field {number}: unsupported wire type {other}")),
        };
        Ok(Some((number, field)))
    }
}

/// Calls `each` for every field of `buf`.
fn walk<'a>(
    buf: &'a [u8],
    mut each: impl FnMut(u64, Field<'a>) -> Result<(), String>,
) -> Result<(), String> {
    let mut fields = Fields { buf };
    while let Some((number, field)) = fields.next_field()? {
        each(number, field)?;
    }
    Ok(())
}

fn text(bytes: &[u8], what: &str) -> Result<String, String> {
    String::from_utf8(bytes.to_vec()).map_err(|_| format!("{what} is not UTF-8"))
}

/// Reads an ONNX file's bytes. Fails on anything that is not a well-formed protobuf
/// `ModelProto` with a graph.
pub fn read(bytes: &[u8]) -> Result<Summary, String> {
    let mut s = Summary::default();
    let (mut name, mut version, mut graphs) = (String::new(), String::new(), 0);
    walk(bytes, |number, field| {
        match (number, field) {
            (1, Field::Varint(v)) => s.ir_version = v as i64,
            (2, Field::Bytes(b)) => name = text(b, "producer_name")?,
            (3, Field::Bytes(b)) => version = text(b, "producer_version")?,
            (7, Field::Bytes(b)) => {
                graphs += 1;
                graph(b, 0, true, &mut s)?;
            }
            (8, Field::Bytes(b)) => s.opsets.push(opset(b)?),
            (20, Field::Bytes(b)) => walk(b, |n, f| match (n, f) {
                (1 | 2, Field::Bytes(g)) => graph(g, 1, false, &mut s),
                _ => Ok(()),
            })?,
            (25, Field::Bytes(b)) => walk(b, |n, f| match (n, f) {
                (7, Field::Bytes(node_bytes)) => node(node_bytes, 1, &mut s),
                _ => Ok(()),
            })?,
            _ => {}
        }
        Ok(())
    })
    .map_err(|e| format!("not a valid ONNX model: {e}"))?;
    if graphs == 0 {
        return Err("not a valid ONNX model: it holds no graph".into());
    }
    s.producer = format!("{name} {version}").trim().to_owned();
    Ok(s)
}

fn opset(bytes: &[u8]) -> Result<Opset, String> {
    let mut o = Opset {
        domain: String::new(),
        version: 0,
    };
    walk(bytes, |number, field| {
        match (number, field) {
            (1, Field::Bytes(b)) => o.domain = text(b, "opset domain")?,
            (2, Field::Varint(v)) => o.version = v as i64,
            _ => {}
        }
        Ok(())
    })?;
    Ok(o)
}

/// A `GraphProto`; `main` says whether its inputs and outputs are the model's.
fn graph(bytes: &[u8], depth: usize, main: bool, s: &mut Summary) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err(format!("graphs nest deeper than {MAX_DEPTH}"));
    }
    let (mut inputs, mut outputs, mut initialized) = (Vec::new(), Vec::new(), Vec::new());
    walk(bytes, |number, field| {
        match (number, field) {
            (1, Field::Bytes(b)) => {
                s.nodes += usize::from(main);
                node(b, depth, s)?;
            }
            (5, Field::Bytes(b)) => initialized.push(tensor(b, s)?),
            (15, Field::Bytes(b)) => walk(b, |n, f| match (n, f) {
                (1 | 2, Field::Bytes(t)) => tensor(t, s).map(drop),
                _ => Ok(()),
            })?,
            (11, Field::Bytes(b)) if main => inputs.push(value(b)?),
            (12, Field::Bytes(b)) if main => outputs.push(value(b)?),
            _ => {}
        }
        Ok(())
    })?;
    if main {
        // Older exporters list initializers among the inputs: those are constants.
        inputs.retain(|v: &Value| !initialized.contains(&v.name));
        s.inputs.extend(inputs);
        s.outputs.extend(outputs);
    }
    Ok(())
}

/// A `NodeProto`: its attributes may hold tensors and subgraphs.
fn node(bytes: &[u8], depth: usize, s: &mut Summary) -> Result<(), String> {
    walk(bytes, |number, field| match (number, field) {
        (5, Field::Bytes(attribute)) => walk(attribute, |n, f| match (n, f) {
            (5 | 10, Field::Bytes(t)) => tensor(t, s).map(drop),
            (6 | 11, Field::Bytes(g)) => graph(g, depth + 1, false, s),
            (22 | 23, Field::Bytes(sparse)) => walk(sparse, |n, f| match (n, f) {
                (1 | 2, Field::Bytes(t)) => tensor(t, s).map(drop),
                _ => Ok(()),
            }),
            _ => Ok(()),
        }),
        _ => Ok(()),
    })
}

/// A `TensorProto`: records it when it names an external file (whatever its
/// `data_location` says); returns its name.
fn tensor(bytes: &[u8], s: &mut Summary) -> Result<String, String> {
    let (mut name, mut external, mut location) = (String::new(), false, None);
    walk(bytes, |number, field| {
        match (number, field) {
            (8, Field::Bytes(b)) => name = text(b, "tensor name")?,
            (14, Field::Varint(1)) => external = true,
            (13, Field::Bytes(entry)) => {
                external = true;
                let (mut key, mut val) = (Vec::new(), None);
                walk(entry, |n, f| {
                    match (n, f) {
                        (1, Field::Bytes(k)) => key = k.to_vec(),
                        (2, Field::Bytes(v)) => val = Some(v),
                        _ => {}
                    }
                    Ok(())
                })?;
                if key == b"location" {
                    location = Some(text(val.unwrap_or_default(), "external data location")?);
                }
            }
            _ => {}
        }
        Ok(())
    })?;
    if external {
        s.external.push(External {
            tensor: name.clone(),
            location,
        });
    }
    Ok(name)
}

/// A `ValueInfoProto` (graph input or output).
fn value(bytes: &[u8]) -> Result<Value, String> {
    let mut v = Value {
        name: String::new(),
        elem_type: 0,
        dims: None,
    };
    walk(bytes, |number, field| {
        match (number, field) {
            (1, Field::Bytes(b)) => v.name = text(b, "value name")?,
            (2, Field::Bytes(type_proto)) => walk(type_proto, |n, f| match (n, f) {
                (1, Field::Bytes(tensor_type)) => tensor_type_of(tensor_type, &mut v),
                _ => Ok(()),
            })?,
            _ => {}
        }
        Ok(())
    })?;
    Ok(v)
}

/// `TypeProto.Tensor`: element type and shape.
fn tensor_type_of(bytes: &[u8], v: &mut Value) -> Result<(), String> {
    walk(bytes, |number, field| {
        match (number, field) {
            (1, Field::Varint(t)) => v.elem_type = i32::try_from(t).unwrap_or(-1),
            (2, Field::Bytes(shape)) => {
                let mut dims = Vec::new();
                walk(shape, |n, f| {
                    if let (1, Field::Bytes(dim)) = (n, f) {
                        dims.push(dimension(dim)?);
                    }
                    Ok(())
                })?;
                v.dims = Some(dims);
            }
            _ => {}
        }
        Ok(())
    })
}

fn dimension(bytes: &[u8]) -> Result<Dim, String> {
    let mut d = Dim::Unknown;
    walk(bytes, |number, field| {
        match (number, field) {
            (1, Field::Varint(n)) => d = Dim::Size(n as i64),
            (2, Field::Bytes(b)) => d = Dim::Symbol(text(b, "dim_param")?),
            _ => {}
        }
        Ok(())
    })?;
    Ok(d)
}

/// Writes ONNX protobuf by hand, for tests here and in `files.rs`.
#[cfg(test)]
pub(crate) mod write {
    pub fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    pub fn bytes(out: &mut Vec<u8>, number: u64, b: &[u8]) {
        varint(out, number << 3 | 2);
        varint(out, b.len() as u64);
        out.extend_from_slice(b);
    }

    pub fn int(out: &mut Vec<u8>, number: u64, v: u64) {
        varint(out, number << 3);
        varint(out, v);
    }

    /// A `ValueInfoProto` of a tensor: dims as sizes, or symbols for negative values.
    pub fn value(name: &str, elem_type: u64, dims: &[i64]) -> Vec<u8> {
        let mut shape = Vec::new();
        for &d in dims {
            let mut dim = Vec::new();
            match d {
                d if d >= 0 => int(&mut dim, 1, d as u64),
                _ => bytes(&mut dim, 2, b"batch"),
            }
            bytes(&mut shape, 1, &dim);
        }
        let mut tensor_type = Vec::new();
        int(&mut tensor_type, 1, elem_type);
        bytes(&mut tensor_type, 2, &shape);
        let mut type_proto = Vec::new();
        bytes(&mut type_proto, 1, &tensor_type);
        let mut v = Vec::new();
        bytes(&mut v, 1, name.as_bytes());
        bytes(&mut v, 2, &type_proto);
        v
    }

    /// An initializer whose data is in the external file `location`.
    pub fn external_tensor(name: &str, location: &str) -> Vec<u8> {
        let mut t = Vec::new();
        int(&mut t, 1, 1);
        int(&mut t, 2, 1);
        bytes(&mut t, 8, name.as_bytes());
        let mut entry = Vec::new();
        bytes(&mut entry, 1, b"location");
        bytes(&mut entry, 2, location.as_bytes());
        bytes(&mut t, 13, &entry);
        int(&mut t, 14, 1);
        t
    }

    /// A node `op_type(inputs) -> outputs`.
    pub fn node(name: &str, op_type: &str, inputs: &[&str], outputs: &[&str]) -> Vec<u8> {
        let mut n = Vec::new();
        for i in inputs {
            bytes(&mut n, 1, i.as_bytes());
        }
        for o in outputs {
            bytes(&mut n, 2, o.as_bytes());
        }
        bytes(&mut n, 3, name.as_bytes());
        bytes(&mut n, 4, op_type.as_bytes());
        n
    }

    /// A model (opset 13) of one graph made of `graph_fields` (already-encoded fields).
    pub fn model(graph_fields: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        int(&mut m, 1, 8);
        bytes(&mut m, 2, b"inferd-test");
        bytes(&mut m, 7, graph_fields);
        let mut opset = Vec::new();
        bytes(&mut opset, 1, b"");
        int(&mut opset, 2, 13);
        bytes(&mut m, 8, &opset);
        m
    }
}

#[cfg(test)]
mod tests {
    use super::write::{bytes, external_tensor, model, node, value};
    use super::{Dim, Opset, read};

    fn relu_model() -> Vec<u8> {
        let mut g = Vec::new();
        bytes(&mut g, 1, &node("r", "Relu", &["x"], &["y"]));
        bytes(&mut g, 11, &value("x", 1, &[-1, 4]));
        bytes(&mut g, 12, &value("y", 1, &[-1, 4]));
        model(&g)
    }

    #[test]
    fn reads_inputs_outputs_and_opsets() {
        let s = read(&relu_model()).unwrap();
        assert_eq!(s.ir_version, 8);
        assert_eq!(s.producer, "inferd-test");
        assert_eq!(
            s.opsets,
            vec![Opset {
                domain: String::new(),
                version: 13
            }]
        );
        assert_eq!(s.nodes, 1);
        let x = &s.inputs[0];
        assert_eq!((x.name.as_str(), x.elem_type), ("x", 1));
        assert_eq!(
            x.dims,
            Some(vec![Dim::Symbol("batch".into()), Dim::Size(4)])
        );
        assert_eq!(s.outputs[0].name, "y");
        assert!(s.external.is_empty());
    }

    #[test]
    fn finds_external_data_in_subgraphs_and_drops_initialized_inputs() {
        let mut inner = Vec::new();
        bytes(&mut inner, 5, &external_tensor("w", "../../etc/passwd"));
        let mut attribute = Vec::new();
        bytes(&mut attribute, 1, b"then_branch");
        bytes(&mut attribute, 6, &inner);
        let mut if_node = node("if", "If", &["c"], &["y"]);
        bytes(&mut if_node, 5, &attribute);
        let mut g = Vec::new();
        bytes(&mut g, 1, &if_node);
        bytes(&mut g, 5, &external_tensor("c", "weights.bin"));
        bytes(&mut g, 11, &value("c", 9, &[]));
        bytes(&mut g, 12, &value("y", 1, &[1]));
        let s = read(&model(&g)).unwrap();
        assert!(s.inputs.is_empty(), "c is an initializer");
        let found: Vec<_> = s.external.iter().map(|e| e.location.clone()).collect();
        assert_eq!(
            found,
            vec![Some("../../etc/passwd".into()), Some("weights.bin".into())]
        );
    }

    #[test]
    fn refuses_garbage_truncation_and_deep_nesting() {
        assert!(read(b"not a model at all").is_err());
        let m = relu_model();
        for cut in 1..m.len() {
            // Every strict prefix ends inside a field: an error, never a panic.
            let _ = read(&m[..cut]);
        }
        assert!(read(&m[..m.len() - 3]).is_err());
        assert!(read(&[]).unwrap_err().contains("no graph"));
        let mut g = Vec::new();
        for _ in 0..40 {
            let mut attribute = Vec::new();
            bytes(&mut attribute, 6, &g);
            let mut n = Vec::new();
            bytes(&mut n, 5, &attribute);
            g = Vec::new();
            bytes(&mut g, 1, &n);
        }
        assert!(read(&model(&g)).unwrap_err().contains("nest deeper"));
    }
}
