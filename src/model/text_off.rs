//! Text preprocessing in a build without the `inference` feature: the same API as `text.rs`,
//! but no tokenizer ever loads (the model's graph has already failed to load by then anyway).

pub use super::Encoded;
use super::ModelError;
use super::manifest::TextSpec;
use std::convert::Infallible;
use std::path::Path;

/// Never built: [`Preprocessor::load`] always fails.
pub struct Preprocessor {
    never: Infallible,
}

impl Preprocessor {
    /// Refuses: this build has no tokenizer.
    pub fn load(path: &Path, _spec: TextSpec) -> Result<Preprocessor, ModelError> {
        Err(ModelError::Tokenizer {
            path: path.display().to_string(),
            reason: "this build of inferd has no tokenizer (cargo feature `inference` is off)"
                .into(),
        })
    }

    pub fn spec(&self) -> &TextSpec {
        match self.never {}
    }

    pub fn encode(&self, _text: &str) -> Result<Encoded, ModelError> {
        match self.never {}
    }
}
