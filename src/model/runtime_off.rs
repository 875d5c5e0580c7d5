//! The runtime of a build without the `inference` feature (the fuzz targets' build): the same
//! API as `runtime.rs`, but no graph ever parses, so every model fails at load time with the
//! reason below and nothing downstream of a load can run.

use super::tensor::{DataType, Tensor};
use std::convert::Infallible;

/// Why every model load fails in this build.
const NO_RUNTIME: &str =
    "this build of inferd has no inference runtime (cargo feature `inference` is off)";

/// One axis of a plan's input: pinned, or left symbolic (the batch axis of tensor models).
#[derive(Debug, Clone, Copy)]
#[expect(dead_code, reason = "read only by the real runtime")]
pub enum Dim {
    Fixed(usize),
    Symbolic(&'static str),
}

/// Never built: [`Graph::parse`] always fails.
pub struct Graph {
    /// Input names in graph order.
    pub inputs: Vec<String>,
    /// Output names in graph order.
    pub outputs: Vec<String>,
    never: Infallible,
}

/// Never built: only a [`Graph`] makes one.
#[derive(Clone)]
pub struct Plan {
    never: Infallible,
}

impl Graph {
    /// Refuses, whatever the bytes: this build cannot run a graph.
    pub fn parse(_bytes: &[u8]) -> Result<Graph, String> {
        Err(NO_RUNTIME.into())
    }

    pub fn unsupported(&self) -> Vec<(String, String)> {
        match self.never {}
    }

    pub fn plan(&self, _shapes: &[(DataType, Vec<Dim>)]) -> Result<Plan, String> {
        match self.never {}
    }
}

impl Plan {
    pub fn kernels(&self) -> Vec<(String, usize)> {
        match self.never {}
    }

    pub fn run(
        &self,
        _inputs: Vec<Tensor>,
        _output_names: &[String],
    ) -> Result<Vec<Tensor>, String> {
        match self.never {}
    }
}

#[cfg(test)]
mod tests {
    use crate::model::{Model, ModelError};
    use std::path::Path;

    #[test]
    fn committed_models_fail_to_load_saying_why() {
        for name in ["digits", "sentiment"] {
            let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/models")).join(name);
            match Model::load(&dir, name, 1) {
                Err(ModelError::Load { reason, .. }) => assert_eq!(reason, super::NO_RUNTIME),
                Err(e) => panic!("{name}: wrong error: {e}"),
                Ok(_) => panic!("{name}: loaded without a runtime"),
            }
        }
    }
}
