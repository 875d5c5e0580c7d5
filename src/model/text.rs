//! Text preprocessing: tokenise with the model's `tokenizer.json` (HF `tokenizers`, pure
//! Rust), refuse empty and over-long text, and pad to the smallest length bucket (for models
//! that declare buckets; others take the tokens as they are). Without the `inference`
//! feature, `text_off.rs` stands in.

pub use super::Encoded;
use super::ModelError;
use super::manifest::TextSpec;
use std::path::Path;
use tokenizers::Tokenizer;

/// A text model's tokenizer and limits.
pub struct Preprocessor {
    tokenizer: Tokenizer,
    spec: TextSpec,
}

impl Preprocessor {
    /// Loads `tokenizer.json`; padding and truncation are switched off whatever the file
    /// says: we pad to buckets ourselves and refuse, rather than truncate, long text.
    pub fn load(path: &Path, spec: TextSpec) -> Result<Preprocessor, ModelError> {
        let mut tokenizer = Tokenizer::from_file(path).map_err(|e| ModelError::Tokenizer {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(None)
            .map_err(|e| ModelError::Tokenizer {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
        Ok(Preprocessor { tokenizer, spec })
    }

    pub fn spec(&self) -> &TextSpec {
        &self.spec
    }

    /// Tokenises `text` and pads it to the smallest bucket that holds it (no padding when
    /// the model declares no buckets).
    pub fn encode(&self, text: &str) -> Result<Encoded, ModelError> {
        if text.trim().is_empty() {
            return Err(ModelError::input("empty_text", "text is empty".into()));
        }
        if text.len() > self.spec.max_text_bytes {
            return Err(ModelError::input(
                "text_too_long",
                format!(
                    "text is {} bytes; the limit is {}",
                    text.len(),
                    self.spec.max_text_bytes
                ),
            ));
        }
        let encoding = self.tokenizer.encode(text, true).map_err(|e| {
            ModelError::input("untokenizable_text", format!("cannot tokenise text: {e}"))
        })?;
        let tokens = encoding.get_ids().len();
        let fits = |b: usize| b >= tokens;
        let bucket = match self.spec.buckets.as_slice() {
            [] => Some(tokens).filter(|_| tokens <= self.spec.max_tokens),
            buckets => buckets.iter().copied().find(|&b| fits(b)),
        }
        .ok_or_else(|| {
            ModelError::input(
                "text_too_long",
                format!(
                    "text is {tokens} tokens; the limit is {}",
                    self.spec.max_tokens
                ),
            )
        })?;
        let mut ids: Vec<i64> = encoding.get_ids().iter().map(|&i| i64::from(i)).collect();
        let mut mask = vec![1i64; tokens];
        ids.resize(bucket, 0);
        mask.resize(bucket, 0);
        Ok(Encoded { ids, mask, tokens })
    }
}
