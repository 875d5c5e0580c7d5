//! `model.toml`: what a model takes and returns, its task, labels and preprocessing.
//! Parsed once at load and validated, so the rest of the code trusts it.

use super::tensor::DataType;
use serde::Deserialize;

/// What the model is for, which decides its HTTP surface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Task {
    /// Text in, one probability per label out; served by `/predict` and OIP with BYTES input.
    #[serde(rename = "text-classification")]
    TextClassification,
    /// Tensors in, tensors out; served by OIP.
    #[serde(rename = "tensor")]
    Tensor,
}

/// One tensor of the ONNX graph; `-1` marks a dynamic axis.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TensorSpec {
    pub name: String,
    pub datatype: DataType,
    pub shape: Vec<i64>,
}

/// Tokenisation of text models.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextSpec {
    /// `tokenizer.json`, relative to the model folder.
    pub tokenizer: String,
    /// Most tokens (with special tokens) a text may have; longer is refused, not truncated.
    pub max_tokens: usize,
    /// Sequence lengths the runtime pads to, ascending, the last equal to `max_tokens`; one
    /// optimised plan each. Empty (the default): one plan for any length, no padding, for
    /// graphs whose output does not depend on padding and that tract can type with a
    /// symbolic sequence length.
    #[serde(default)]
    pub buckets: Vec<usize>,
    /// Most UTF-8 bytes of text, checked before tokenising.
    pub max_text_bytes: usize,
}

/// A model's `model.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub name: String,
    /// The version folder's number (`models/NAME/N/`); in `model.toml` optional, and when
    /// written it must equal the folder's. The single-folder layout's only version is this
    /// key, else 1.
    #[serde(default)]
    pub version: String,
    pub task: Task,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub labels: Vec<String>,
    /// Largest batch (first axis) a tensor request may carry.
    #[serde(default = "default_max_batch")]
    pub max_batch: usize,
    pub text: Option<TextSpec>,
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
}

fn default_max_batch() -> usize {
    64
}

impl Manifest {
    /// Parses and checks the manifest of version `version` of model `name` (its folder's
    /// names); the error says what is wrong.
    pub fn parse(text: &str, name: &str, version: u64) -> Result<Manifest, String> {
        let mut m: Manifest =
            toml::from_str(text).map_err(|e| crate::config::toml_reason(text, &e))?;
        if m.name != name {
            return Err(format!(
                "name {:?} differs from its folder {name:?}",
                m.name
            ));
        }
        match m.version.as_str() {
            "" => m.version = version.to_string(),
            v if v.parse::<u64>() == Ok(version) => m.version = version.to_string(),
            v => {
                return Err(format!(
                    "version {v:?} differs from its folder's version {version}"
                ));
            }
        }
        if m.inputs.is_empty() || m.outputs.is_empty() {
            return Err("needs at least one input and one output".into());
        }
        if m.max_batch == 0 {
            return Err("max_batch must be at least 1".into());
        }
        for spec in m.inputs.iter().chain(&m.outputs) {
            if spec.shape.is_empty() || spec.shape.iter().any(|&d| d == 0 || d < -1) {
                return Err(format!("tensor {}: dims must be positive or -1", spec.name));
            }
        }
        match (m.task, &m.text) {
            (Task::TextClassification, None) => {
                return Err("text-classification needs [text]".into());
            }
            (Task::TextClassification, Some(t)) => {
                let ascending = t.buckets.windows(2).all(|w| w[0] < w[1]);
                if !t.buckets.is_empty() && (!ascending || t.buckets.last() != Some(&t.max_tokens))
                {
                    return Err("text.buckets must ascend and end at max_tokens".into());
                }
                if m.labels.len() < 2 {
                    return Err("text-classification needs two or more labels".into());
                }
                if m.outputs.len() != 1
                    || m.outputs[0].shape.last() != Some(&(m.labels.len() as i64))
                {
                    return Err("text-classification needs one output [batch, labels]".into());
                }
                for name in ["input_ids", "attention_mask"] {
                    if !m.inputs.iter().any(|i| i.name == name) {
                        return Err(format!("text-classification needs input {name}"));
                    }
                }
            }
            (Task::Tensor, Some(_)) => {
                return Err("[text] only applies to text-classification".into());
            }
            (Task::Tensor, None) => {}
        }
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGITS: &str = r#"
name = "digits"
version = "1"
task = "tensor"
[[inputs]]
name = "input"
datatype = "FP32"
shape = [-1, 64]
[[outputs]]
name = "probabilities"
datatype = "FP32"
shape = [-1, 10]
"#;

    #[test]
    fn parses_a_tensor_manifest() {
        let m = Manifest::parse(DIGITS, "digits", 1).unwrap();
        assert_eq!(m.inputs[0].shape, vec![-1, 64]);
        assert_eq!(m.max_batch, 64);
    }

    #[test]
    fn refuses_unknown_keys_wrong_name_and_bad_dims() {
        assert!(Manifest::parse(&format!("{DIGITS}\nextra = 1"), "digits", 1).is_err());
        assert!(
            Manifest::parse(DIGITS, "other", 1)
                .unwrap_err()
                .contains("folder")
        );
        let bad = DIGITS.replace("[-1, 64]", "[-1, 0]");
        assert!(Manifest::parse(&bad, "digits", 1).is_err());
        let e = Manifest::parse(DIGITS, "digits", 2).unwrap_err();
        assert!(e.contains("folder's version 2"), "{e}");
        let unversioned = DIGITS.replace("version = \"1\"\n", "");
        assert_eq!(
            Manifest::parse(&unversioned, "digits", 7).unwrap().version,
            "7"
        );
    }
}
