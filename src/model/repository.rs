//! The served models: every version the version policies select, swapped in atomically per
//! model. Requests hold an `Arc` of the version they started on, so a load, unload or reload
//! never cuts one short; a load that fails keeps the versions that were serving, and the
//! index says why (Triton's model repository extension: `index`, `load`, `unload`).

use super::folders::{self, Stamp};
use super::pool::{How, Pool};
use super::tensor::Tensor;
use super::{Checked, Classification, Encoded, Model, ModelError, SLOW_INT8_KERNEL};
use crate::config::{ModelsConfig, VersionPolicy};
use crate::metrics::Metrics;
use crate::signing::{TrustedKeys, verify_folder};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

/// A version's state in the repository index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum State {
    Ready,
    Unavailable,
    Loading,
}

/// One line of the repository index: a version found on disk or served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IndexEntry {
    pub name: String,
    pub version: String,
    pub state: State,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

/// A served version, and its files as they were when it loaded.
#[derive(Clone)]
struct Loaded {
    model: Arc<Model>,
    stamp: Stamp,
}

/// Every served model's versions, ascending, and the default text model.
#[derive(Default)]
struct Served {
    models: BTreeMap<String, BTreeMap<u64, Loaded>>,
    default_text: Option<String>,
}

/// Why a version on disk is not served, or that it is loading.
#[derive(Debug, Clone)]
enum Note {
    Loading,
    Failed(String),
    Unloaded,
}

/// Every served model, the pool their inference runs on, and what the index reports.
pub struct ModelRepository {
    served: RwLock<Arc<Served>>,
    /// The `[models]` settings in force (held only to read or replace them).
    settings: Mutex<ModelsConfig>,
    /// Held for a whole load, unload or reload: one at a time, while the index and
    /// inference go on.
    changing: Mutex<()>,
    notes: Mutex<BTreeMap<(String, u64), Note>>,
    pool: Arc<Pool>,
    metrics: Metrics,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock only means a thread panicked holding it; the data is whole (every
    // change to it is one assignment).
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl ModelRepository {
    /// Loads every model the settings name (all folders under `dir`, or `enabled`), each
    /// in the versions its policy selects, and runs each once: any failure is an error.
    pub fn open(
        settings: &ModelsConfig,
        pool: Arc<Pool>,
        metrics: Metrics,
    ) -> Result<ModelRepository, ModelError> {
        let repo = ModelRepository {
            served: RwLock::new(Arc::default()),
            settings: Mutex::new(settings.clone()),
            changing: Mutex::new(()),
            notes: Mutex::new(BTreeMap::new()),
            pool,
            metrics,
        };
        repo.reload(settings)?;
        Ok(repo)
    }

    /// `open` with the default version policy and no signature check: the models under
    /// `dir` (or only `only`), `default` the default text model.
    pub fn load(
        dir: &Path,
        only: &[String],
        default: Option<&str>,
        pool: Arc<Pool>,
        metrics: Metrics,
    ) -> Result<ModelRepository, ModelError> {
        let settings = ModelsConfig {
            dir: dir.to_path_buf(),
            default: default.map(str::to_owned),
            enabled: only.to_vec(),
            version_policy: VersionPolicy::default(),
            version_policies: BTreeMap::new(),
            trusted_keys_dir: None,
            require_signed: false,
        };
        ModelRepository::open(&settings, pool, metrics)
    }

    /// Makes the served set what `settings` says (SIGHUP): versions whose files and
    /// signing rules are unchanged stay as they are, others load and run once. All or
    /// nothing: on any failure the served set and settings stay as they were, and the
    /// index gives the failing version's reason.
    pub fn reload(&self, settings: &ModelsConfig) -> Result<(), ModelError> {
        let _one_at_a_time = lock(&self.changing);
        let in_force = self.settings();
        let current = self.snapshot();
        let reuse = same_signing(&in_force, settings);
        let names = match settings.enabled.as_slice() {
            [] => folders::model_names(&settings.dir)
                .map_err(|reason| load_error(&settings.dir, reason))?,
            only => only.to_vec(),
        };
        let mut models = BTreeMap::new();
        for name in names {
            let family = self.prepare(&name, settings, &current, reuse)?;
            models.insert(name, family);
        }
        if models.is_empty() {
            return Err(load_error(
                &settings.dir,
                "no model folders (each needs model.toml and model.onnx, or version folders 1/, 2/, ...)".into(),
            ));
        }
        let default_text = default_text(&models, settings.default.as_deref())
            .map_err(|reason| load_error(&settings.dir, reason))?;
        let unserved: Vec<String> = current
            .models
            .keys()
            .filter(|n| !models.contains_key(*n))
            .cloned()
            .collect();
        self.install(Served {
            models,
            default_text,
        });
        for name in unserved {
            self.note_all(&settings.dir, &name, Note::Unloaded);
        }
        *lock(&self.settings) = settings.clone();
        Ok(())
    }

    /// Loads (or reloads) model `name` from disk in the versions its policy selects:
    /// Triton's `POST /v2/repository/models/NAME/load`. Versions whose files are unchanged
    /// stay; the others load and run once. On failure the versions serving before stay.
    /// Returns the versions now served.
    pub fn load_model(&self, name: &str) -> Result<Vec<u64>, ModelError> {
        let _one_at_a_time = lock(&self.changing);
        let settings = self.settings();
        self.known(name, &settings)?;
        let current = self.snapshot();
        let family = self.prepare(name, &settings, &current, true)?;
        let versions = family.keys().copied().collect();
        let mut models = current.models.clone();
        models.insert(name.to_owned(), family);
        let default_text = default_text(&models, settings.default.as_deref()).unwrap_or(None);
        self.install(Served {
            models,
            default_text,
        });
        Ok(versions)
    }

    /// Stops serving model `name` (every version): Triton's `.../unload`. Requests already
    /// running finish; an unknown name is 404, one not served is no error.
    pub fn unload_model(&self, name: &str) -> Result<(), ModelError> {
        let _one_at_a_time = lock(&self.changing);
        let settings = self.settings();
        self.known(name, &settings)?;
        let current = self.snapshot();
        let mut models = current.models.clone();
        if models.remove(name).is_some() {
            let default_text = default_text(&models, settings.default.as_deref()).unwrap_or(None);
            self.install(Served {
                models,
                default_text,
            });
        }
        self.note_all(&settings.dir, name, Note::Unloaded);
        log::info!("model {name} unloaded");
        Ok(())
    }

    /// A model the repository knows: served, or a folder under `dir`.
    fn known(&self, name: &str, settings: &ModelsConfig) -> Result<(), ModelError> {
        let on_disk = folders::valid_name(name) && settings.dir.join(name).is_dir();
        match on_disk || self.snapshot().models.contains_key(name) {
            true => Ok(()),
            false => Err(ModelError::UnknownModel(name.to_owned())),
        }
    }

    /// The versions of `name` its policy selects, loaded (or kept when unchanged), each
    /// checked and run once.
    fn prepare(
        &self,
        name: &str,
        settings: &ModelsConfig,
        current: &Served,
        reuse: bool,
    ) -> Result<BTreeMap<u64, Loaded>, ModelError> {
        let folder = settings.dir.join(name);
        if !folders::valid_name(name) {
            return Err(load_error(&folder, "not a valid model name".into()));
        }
        let on_disk = folders::versions(&folder).map_err(|reason| load_error(&folder, reason))?;
        let policy = settings
            .version_policies
            .get(name)
            .unwrap_or(&settings.version_policy);
        let found: Vec<u64> = on_disk.iter().map(|(v, _)| *v).collect();
        let wanted = policy.select(&found);
        if wanted.is_empty() {
            let reason = format!("no version on disk ({found:?}) matches its policy \"{policy}\"");
            return Err(load_error(&folder, reason));
        }
        let served = current.models.get(name);
        let mut family = BTreeMap::new();
        for (version, path) in on_disk.into_iter().filter(|(v, _)| wanted.contains(v)) {
            let kept = served.and_then(|f| f.get(&version)).filter(|_| reuse);
            let loaded = self.load_version(name, version, &path, settings, kept)?;
            family.insert(version, loaded);
        }
        Ok(family)
    }

    /// One version: the served one when its files are unchanged, else loaded afresh
    /// (signature first when required, then the model, then one run).
    fn load_version(
        &self,
        name: &str,
        version: u64,
        path: &Path,
        settings: &ModelsConfig,
        kept: Option<&Loaded>,
    ) -> Result<Loaded, ModelError> {
        let key = (name.to_owned(), version);
        // Every time, kept versions too: a key removed from trusted_keys_dir, or a file
        // changed in place, is refused at the next load or reload.
        if let Err(e) = check_signature(path, settings) {
            log::error!("model {name} version {version} not loaded: {e}");
            lock(&self.notes).insert(key, Note::Failed(e.to_string()));
            return Err(e);
        }
        let stamp = folders::stamp(path).map_err(|reason| load_error(path, reason))?;
        if let Some(kept) = kept.filter(|k| k.stamp == stamp) {
            return Ok(kept.clone());
        }
        lock(&self.notes).insert(key.clone(), Note::Loading);
        let loaded = load_checked(path, name, version).map(|model| Loaded {
            model: Arc::new(model),
            stamp,
        });
        let mut notes = lock(&self.notes);
        match &loaded {
            Ok(l) => {
                notes.remove(&key);
                log_kernels(&l.model, path);
            }
            Err(e) => {
                log::error!("model {name} version {version} not loaded: {e}");
                notes.insert(key, Note::Failed(e.to_string()));
            }
        }
        loaded
    }

    fn settings(&self) -> ModelsConfig {
        lock(&self.settings).clone()
    }

    fn snapshot(&self) -> Arc<Served> {
        self.served
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn install(&self, served: Served) {
        {
            // What was noted of a served model's versions (failed, unloaded) is history.
            let mut notes = lock(&self.notes);
            notes.retain(|(name, _), note| {
                matches!(note, Note::Loading) || !served.models.contains_key(name)
            });
        }
        let models = served.models.values().flat_map(|f| f.values());
        self.metrics.models(models.map(|l| {
            let m = &l.model;
            (m.name(), m.manifest.version.as_str(), m.task_name())
        }));
        *self.served.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(served);
    }

    /// Marks every version of `name` on disk under `dir` with `note`.
    fn note_all(&self, dir: &Path, name: &str, note: Note) {
        let Ok(on_disk) = folders::versions(&dir.join(name)) else {
            return;
        };
        let mut notes = lock(&self.notes);
        for (version, _) in on_disk {
            notes.insert((name.to_owned(), version), note.clone());
        }
    }

    /// Every model version found on disk or served, with its state and, when not served,
    /// why (Triton's repository index).
    pub fn index(&self) -> Vec<IndexEntry> {
        let settings = self.settings();
        let served = self.snapshot();
        let notes = lock(&self.notes).clone();
        let mut names: BTreeSet<String> = served.models.keys().cloned().collect();
        names.extend(folders::model_names(&settings.dir).unwrap_or_default());
        let mut entries = Vec::new();
        for name in names {
            let family = served.models.get(&name);
            let mut versions: BTreeSet<u64> = family
                .map(|f| f.keys().copied().collect())
                .unwrap_or_default();
            match folders::versions(&settings.dir.join(&name)) {
                Ok(found) => versions.extend(found.iter().map(|(v, _)| *v)),
                // A folder that cannot be read, with nothing served from it.
                Err(reason) if family.is_none() => entries.push(IndexEntry {
                    name: name.clone(),
                    version: String::new(),
                    state: State::Unavailable,
                    reason,
                }),
                Err(_) => {}
            }
            for version in versions {
                let ready = family.is_some_and(|f| f.contains_key(&version));
                let note = notes.get(&(name.clone(), version));
                let (state, reason) = match (ready, note) {
                    (true, _) => (State::Ready, String::new()),
                    (false, Some(Note::Loading)) => (State::Loading, String::new()),
                    (false, Some(Note::Failed(reason))) => (State::Unavailable, reason.clone()),
                    (false, Some(Note::Unloaded)) => (State::Unavailable, "unloaded".into()),
                    (false, None) => (State::Unavailable, not_served(&name, version, &settings)),
                };
                let version = version.to_string();
                let name = name.clone();
                entries.push(IndexEntry {
                    name,
                    version,
                    state,
                    reason,
                });
            }
        }
        entries
    }

    /// The model by name and, when given, version; without one, the newest served.
    pub fn get(&self, name: &str, version: Option<&str>) -> Result<Arc<Model>, ModelError> {
        let served = self.snapshot();
        let family = served
            .models
            .get(name)
            .ok_or_else(|| ModelError::UnknownModel(name.to_owned()))?;
        let loaded = match version {
            None => family.values().next_back(),
            Some(v) => v.parse::<u64>().ok().and_then(|v| family.get(&v)),
        };
        match loaded {
            Some(l) => Ok(l.model.clone()),
            None => Err(ModelError::UnknownVersion {
                model: name.to_owned(),
                version: version.unwrap_or_default().to_owned(),
            }),
        }
    }

    /// The versions of `name` served now, ascending (empty when it is not served).
    pub fn versions(&self, name: &str) -> Vec<u64> {
        let served = self.snapshot();
        served
            .models
            .get(name)
            .map(|f| f.keys().copied().collect())
            .unwrap_or_default()
    }

    /// The version policy of model `name`.
    pub fn policy(&self, name: &str) -> VersionPolicy {
        let settings = lock(&self.settings);
        settings
            .version_policies
            .get(name)
            .unwrap_or(&settings.version_policy)
            .clone()
    }

    /// The model `/predict` uses when the body names none.
    pub fn default_text(&self) -> Result<Arc<Model>, ModelError> {
        match &self.snapshot().default_text {
            Some(name) => self.get(name, None),
            None => Err(ModelError::UnknownModel(
                "(no default text model is served)".into(),
            )),
        }
    }

    /// Every served version, by name then version.
    pub fn models(&self) -> Vec<Arc<Model>> {
        let served = self.snapshot();
        served
            .models
            .values()
            .flat_map(|f| f.values().map(|l| l.model.clone()))
            .collect()
    }

    /// The inference workers.
    pub fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }

    /// Classifies tokenised texts on the pool for `caller`, one job for the whole request,
    /// which waits at most `wait` (within the queue timeout) to start.
    pub fn classify(
        &self,
        model: &Arc<Model>,
        texts: Vec<Encoded>,
        caller: u64,
        wait: Option<Duration>,
    ) -> Result<Vec<Classification>, ModelError> {
        let (model, metrics) = (model.clone(), self.metrics.clone());
        let how = How {
            here: model.quick(texts.len()),
            wait,
        };
        let queued = Instant::now();
        let ran = self.pool.run(caller, how, move || {
            let waited = queued.elapsed();
            metrics.queue_wait(waited);
            model.stats.queued(waited);
            texts
                .iter()
                .map(|t| {
                    let started = Instant::now();
                    let (c, bucket) = model.classify_encoded(t)?;
                    let took = started.elapsed();
                    model.ran(took, 1);
                    model.stats.executed(1, took);
                    metrics.inference(model.name(), Some(bucket), took);
                    Ok(c)
                })
                .collect()
        });
        self.counted(ran)?
    }

    fn counted<T>(&self, ran: Result<T, ModelError>) -> Result<T, ModelError> {
        if matches!(ran, Err(ModelError::Busy { .. })) {
            self.metrics.inference_rejected();
        }
        ran
    }

    /// Runs the model on checked tensors for `caller`, waiting at most `wait` (within the
    /// queue timeout) to start: on the pool, or on this thread when its measured cost is
    /// tiny and a worker's share is free.
    pub fn infer(
        &self,
        model: &Arc<Model>,
        inputs: Checked,
        caller: u64,
        wait: Option<Duration>,
    ) -> Result<Vec<Tensor>, ModelError> {
        let (model, metrics) = (model.clone(), self.metrics.clone());
        let how = How {
            here: model.quick(inputs.batch),
            wait,
        };
        let queued = Instant::now();
        let ran = self.pool.run(caller, how, move || {
            let waited = queued.elapsed();
            metrics.queue_wait(waited);
            model.stats.queued(waited);
            let started = Instant::now();
            let out = model.infer_now(inputs.inputs);
            let took = started.elapsed();
            model.ran(took, inputs.batch);
            if out.is_ok() {
                model.stats.executed(inputs.batch, took);
            }
            metrics.inference(model.name(), None, took);
            out
        });
        self.counted(ran)?
    }
}

fn load_error(path: &Path, reason: String) -> ModelError {
    ModelError::Load {
        path: path.display().to_string(),
        reason,
    }
}

/// Whether versions loaded under `old` may be kept under `new`: the same signing rules.
fn same_signing(old: &ModelsConfig, new: &ModelsConfig) -> bool {
    old.require_signed == new.require_signed && old.trusted_keys_dir == new.trusted_keys_dir
}

/// With `require_signed`, the version folder's files must be those its manifest lists,
/// signed by a key in `trusted_keys_dir`: checked before tract reads a byte of them.
fn check_signature(path: &Path, settings: &ModelsConfig) -> Result<(), ModelError> {
    let (true, Some(keys_dir)) = (settings.require_signed, &settings.trusted_keys_dir) else {
        return Ok(());
    };
    let keys = TrustedKeys::load(keys_dir).map_err(|e| ModelError::Signature(e.to_string()))?;
    let signer = verify_folder(path, &keys).map_err(|e| ModelError::Signature(e.to_string()))?;
    log::debug!("{}: signed by key {signer}", path.display());
    Ok(())
}

/// Loads one version folder, and runs it once.
fn load_checked(path: &Path, name: &str, version: u64) -> Result<Model, ModelError> {
    let model = Model::load(path, name, version)?;
    model.warm_up()?;
    Ok(model)
}

/// Why a version on disk that nothing failed or unloaded is not served.
fn not_served(name: &str, version: u64, settings: &ModelsConfig) -> String {
    if !settings.enabled.is_empty() && !settings.enabled.iter().any(|n| n == name) {
        return "not in [models] enabled: load it with the repository API".into();
    }
    let policy = settings
        .version_policies
        .get(name)
        .unwrap_or(&settings.version_policy);
    format!("version {version} is not selected by the version policy \"{policy}\"")
}

/// Logs the matrix kernels tract chose for a model, and warns when int8 runs on the kernel
/// measured slow.
fn log_kernels(model: &Model, folder: &Path) {
    let kernels = model.kernels();
    let listed = match kernels.as_slice() {
        [] => "none".to_owned(),
        all => all
            .iter()
            .map(|(k, n)| format!("{k} x{n}"))
            .collect::<Vec<_>>()
            .join(", "),
    };
    log::info!(
        "model {} v{} loaded from {}; matrix kernels: {listed}",
        model.name(),
        model.manifest.version,
        folder.display(),
    );
    if let Some((slow, _)) = kernels
        .iter()
        .find(|(k, _)| k.starts_with(SLOW_INT8_KERNEL))
    {
        log::warn!(
            "model {}: int8 matrix products run on tract's {slow} kernel (this CPU has \
             no AVX-512 VNNI or AVX-VNNI), measured 12-14x slower than it should be \
             on AMD Zen 3 (docs/text-model-performance.md); expect text inference in \
             hundreds of ms",
            model.name()
        );
    }
}

/// The default text model: `default` when it names a served text model (an error when it
/// does not), else the only text model there is.
fn default_text(
    models: &BTreeMap<String, BTreeMap<u64, Loaded>>,
    default: Option<&str>,
) -> Result<Option<String>, String> {
    let is_text = |family: &BTreeMap<u64, Loaded>| {
        family
            .values()
            .next_back()
            .is_some_and(|l| l.model.is_text())
    };
    match default {
        Some(name) => match models.get(name) {
            Some(f) if is_text(f) => Ok(Some(name.to_owned())),
            _ => Err(format!("default model {name:?} is not a served text model")),
        },
        None => {
            let texts: Vec<&String> = models
                .iter()
                .filter(|(_, f)| is_text(f))
                .map(|(n, _)| n)
                .collect();
            Ok((texts.len() == 1).then(|| texts[0].clone()))
        }
    }
}
