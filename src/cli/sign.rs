//! `inferd sign`, `inferd verify` and `inferd model sign|verify`: detached Ed25519 signatures
//! on a provisioning station, in the format `openssl pkeyutl -rawin` reads and writes.

use super::CliError;
use crate::provision::{ModelSigning, Provisioned};
use crate::signing::{self, Signer, TrustedKeys};
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};

/// The top-level signing commands, flattened into `inferd`'s own.
#[derive(Subcommand, Debug)]
pub enum SignCommand {
    /// Sign files: writes FILE.sig (raw 64-byte Ed25519, as `openssl pkeyutl -sign -rawin`).
    Sign {
        /// A private key from `inferd keygen` (KID.key.pem) or any Ed25519 PKCS#8 PEM.
        #[arg(long)]
        key: PathBuf,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Check a file's detached signature; exits 0 and names the signing key, else 1.
    Verify {
        #[command(flatten)]
        trusted: TrustedArgs,
        file: PathBuf,
        /// The signature file (default: FILE.sig).
        #[arg(long)]
        sig: Option<PathBuf>,
    },
}

/// `inferd model sign|verify`.
#[derive(Subcommand, Debug)]
pub enum ModelSignCommand {
    /// Sign a model version folder: writes DIR/MANIFEST.sha256 and DIR/MANIFEST.sha256.sig.
    Sign {
        dir: PathBuf,
        #[arg(long)]
        key: PathBuf,
    },
    /// Check a signed model version folder as a device with require_signed would.
    Verify {
        dir: PathBuf,
        #[command(flatten)]
        trusted: TrustedArgs,
    },
}

/// Which public keys to trust: one file, or a folder of `KID.pem` (a trusted_keys_dir).
#[derive(Args, Debug)]
#[group(required = true, multiple = false)]
pub struct TrustedArgs {
    /// One public key (SPKI PEM, e.g. `inferd keygen`'s KID.pem); its file stem is the key id.
    #[arg(long)]
    key: Option<PathBuf>,
    /// A folder of trusted public keys, KID.pem each.
    #[arg(long)]
    keys: Option<PathBuf>,
}

impl TrustedArgs {
    fn load(&self) -> Result<TrustedKeys, signing::SigningError> {
        match (&self.key, &self.keys) {
            (Some(file), _) => TrustedKeys::from_file(file),
            (None, Some(dir)) => TrustedKeys::load(dir),
            // clap's group makes one of them required.
            (None, None) => Ok(TrustedKeys::empty("no keys given")),
        }
    }
}

/// Runs `inferd sign` or `inferd verify`.
pub fn run(command: SignCommand) -> Result<(), CliError> {
    match command {
        SignCommand::Sign { key, files } => sign(&key, &files),
        SignCommand::Verify { trusted, file, sig } => {
            let kid = signing::verify_file(&file, sig.as_deref(), &trusted.load()?)?;
            println!("{}: good signature by key {kid}", file.display());
            Ok(())
        }
    }
}

/// Runs `inferd model sign` or `inferd model verify`.
pub fn run_model(command: ModelSignCommand) -> Result<(), CliError> {
    match command {
        ModelSignCommand::Sign { dir, key } => {
            let signer = Signer::load(&key)?;
            let files = signing::sign_folder(&dir, &signer)?;
            println!(
                "signed {} ({files} file(s)) with key {}: {} and {}",
                dir.display(),
                signer.kid(),
                signing::MANIFEST,
                signing::MANIFEST_SIG
            );
            Ok(())
        }
        ModelSignCommand::Verify { dir, trusted } => {
            let kid = signing::verify_folder(&dir, &trusted.load()?)?;
            println!(
                "{}: every file matches the manifest signed by key {kid}",
                dir.display()
            );
            Ok(())
        }
    }
}

fn sign(key: &Path, files: &[PathBuf]) -> Result<(), CliError> {
    let signer = Signer::load(key)?;
    for file in files {
        let sig = signer.sign_file(file)?;
        println!("{} (key {})", sig.display(), signer.kid());
    }
    Ok(())
}

/// `init --require-signed-models [--model-key PUB.pem]...` as provisioning options.
pub fn model_signing(require: bool, keys: Vec<PathBuf>) -> ModelSigning {
    match (require, keys.is_empty()) {
        (false, _) => ModelSigning::Off,
        (true, true) => ModelSigning::NewKey,
        (true, false) => ModelSigning::Trust(keys),
    }
}

/// What `init` printed about signed models: the keys, the private key to move off the
/// device, and how to sign the models that are not signed yet.
pub fn print_signed_models(p: &Provisioned) {
    let Some(s) = &p.signed_models else {
        return;
    };
    println!(
        "models:    only signed model folders load; trusted keys in {}: {}",
        s.trusted_keys_dir.display(),
        s.key_ids.join(", ")
    );
    let key = match &s.signing_key {
        Some(key) => {
            println!(
                "model signing key (private, 0600): {}\n  move it to the provisioning station and delete it here: \
                 whoever holds it can ship models this device loads",
                key.display()
            );
            key.display().to_string()
        }
        None => "KEY.key.pem".to_owned(),
    };
    if !s.unsigned.is_empty() {
        println!("not signed yet, so refused until signed (on the provisioning station):");
        for folder in &s.unsigned {
            println!("  inferd model sign {} --key {key}", folder.display());
        }
    }
}
