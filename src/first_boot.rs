//! First boot on an empty volume (`inferd serve --first-boot`): a container image has no
//! shell to run `inferd init` in, so `serve` provisions the config's folder itself when the
//! config file is absent, and leaves the admin API key in a 0600 file there, never in a log.

use crate::provision::{self, InitOptions, ProvisionError};
use std::path::{Path, PathBuf};

/// The file, in the state folder, that holds the admin API key a first boot made. The key is
/// stored only as a hash in `api_keys.toml`; this copy is for the operator to read once and
/// delete.
pub const ADMIN_KEY_FILE: &str = "initial-admin-key";

/// `serve`'s first-boot options. Without `--first-boot` a missing config is an error, as
/// before; the other options only count on the boot that provisions.
#[derive(clap::Args, Debug, Clone)]
pub struct FirstBoot {
    /// When the config file does not exist, provision its folder first (as `inferd init`;
    /// the folder must be empty or absent) and write the admin API key to
    /// `initial-admin-key` (mode 0600) beside it.
    #[arg(long)]
    pub first_boot: bool,
    /// The listen address a first boot writes into the config.
    #[arg(long = "first-boot-listen", default_value = "0.0.0.0:8443")]
    pub listen: String,
    /// Names the first boot's TLS certificate covers (repeatable).
    #[arg(long = "first-boot-name", default_values = ["localhost", "127.0.0.1", "::1"])]
    pub names: Vec<String>,
    /// The models folder a first boot writes into the config.
    #[arg(long = "first-boot-models", default_value = "models")]
    pub models: PathBuf,
}

/// What a first boot made, for the log (paths only: the key stays in its file).
#[derive(Debug)]
pub struct Provisioned {
    pub dir: PathBuf,
    pub admin_key_file: PathBuf,
    pub token_key_id: String,
}

impl FirstBoot {
    /// Provisions the folder of `config` when asked to and the file is absent; `None` when
    /// there was nothing to do.
    pub fn provision(&self, config: &Path) -> Result<Option<Provisioned>, ProvisionError> {
        if !self.first_boot || config.exists() {
            return Ok(None);
        }
        // `init` writes DIR/inferd.toml: any other name would be provisioned and then missed.
        let dir = match (config.parent(), config.file_name()) {
            (Some(dir), Some(name)) if name == "inferd.toml" => dir,
            _ => {
                return Err(ProvisionError::Write {
                    path: config.display().to_string(),
                    reason: "--first-boot provisions DIR/inferd.toml; name that file in --config"
                        .into(),
                });
            }
        };
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        let options = InitOptions {
            listen: self.listen.clone(),
            names: self.names.clone(),
            models_dir: self.models.clone(),
            // Signed models in a container: INFERD_MODELS_TRUSTED_KEYS_DIR (a mounted secret)
            // and INFERD_MODELS_REQUIRE_SIGNED=true, at every start.
            model_signing: provision::ModelSigning::Off,
        };
        let made = provision::init(dir, &options)?;
        let admin_key_file = dir.join(ADMIN_KEY_FILE);
        provision::write_atomic(
            &admin_key_file,
            format!("{}\n", made.api_key).as_bytes(),
            0o600,
        )?;
        Ok(Some(Provisioned {
            dir: dir.to_path_buf(),
            admin_key_file,
            token_key_id: made.token_key_id,
        }))
    }
}

impl Provisioned {
    /// One log line: where the state and the admin key are (never the key itself).
    pub fn log(&self) {
        log::warn!(
            "first boot: provisioned {} (token kid {}); the admin API key is in {} (mode 0600): \
             read it once, then delete the file",
            self.dir.display(),
            self.token_key_id,
            self.admin_key_file.display()
        );
    }
}
