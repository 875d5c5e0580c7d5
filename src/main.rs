//! The `inferd` binary: parse the command line, run it, map the error to an exit code.

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = inferd::cli::Cli::parse();
    match inferd::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let mut line = format!("inferd: {e}");
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                line.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            // One line, whatever the causes' own text looks like: journald keeps it whole.
            eprintln!("{}", line.replace(['\r', '\n'], " "));
            ExitCode::FAILURE
        }
    }
}
