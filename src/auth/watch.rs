//! Files that reload without a restart: a value built from files, rebuilt when any of them
//! changes (checked at most once a second, on use). A broken file keeps the old value and
//! logs one line naming it; readers in flight keep the `Arc` they hold.

use super::AuthError;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

const CHECK_EVERY: Duration = Duration::from_secs(1);

type Loader<T> = Box<dyn Fn() -> Result<T, AuthError> + Send + Sync>;

/// (modified time, length) of each watched path; `None` for a missing one.
type Stamp = Vec<Option<(SystemTime, u64)>>;

fn stamp(paths: &[PathBuf]) -> Stamp {
    paths
        .iter()
        .map(|p| {
            std::fs::metadata(p)
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len())))
        })
        .collect()
}

/// A value kept in step with the files it was loaded from.
pub struct Watched<T> {
    what: &'static str,
    paths: Vec<PathBuf>,
    load: Loader<T>,
    current: RwLock<Arc<T>>,
    state: Mutex<(Instant, Stamp)>,
    /// Why the last reload failed, while the previous value stays in force.
    failure: Mutex<Option<String>>,
}

impl<T> Watched<T> {
    /// Loads the value now (an error here is a start-up error) and watches `paths` (files,
    /// or folders: a folder's time changes when files are added, removed or renamed).
    pub fn new(
        what: &'static str,
        paths: Vec<PathBuf>,
        load: Loader<T>,
    ) -> Result<Watched<T>, AuthError> {
        let stamped = stamp(&paths);
        let value = load()?;
        Ok(Watched {
            what,
            paths,
            load,
            current: RwLock::new(Arc::new(value)),
            state: Mutex::new((Instant::now(), stamped)),
            failure: Mutex::new(None),
        })
    }

    /// The current value, reloading first if a watched file changed.
    pub fn get(&self) -> Arc<T> {
        self.refresh(false);
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Why the last reload failed (the previous value is still in force), checking the
    /// files first if a second has passed; `None` when the files loaded.
    pub fn failure(&self) -> Option<String> {
        self.refresh(false);
        self.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Checks the files now (SIGHUP, tests) instead of waiting for the next second.
    pub fn reload_now(&self) {
        self.refresh(true);
    }

    fn refresh(&self, force: bool) {
        let Ok(mut state) = self.state.try_lock() else {
            return;
        };
        if !force && state.0.elapsed() < CHECK_EVERY {
            return;
        }
        state.0 = Instant::now();
        let now = stamp(&self.paths);
        if now == state.1 && !force {
            return;
        }
        state.1 = now;
        let failure = match (self.load)() {
            Ok(value) => {
                *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(value);
                log::info!("reloaded {}", self.what);
                None
            }
            Err(e) => {
                log::error!(
                    "reload of {} failed, keeping the previous one: {e}",
                    self.what
                );
                Some(e.to_string())
            }
        };
        *self.failure.lock().unwrap_or_else(|p| p.into_inner()) = failure;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reloads_on_change_and_keeps_the_old_value_on_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("n.txt");
        std::fs::write(&file, "1").unwrap();
        let path = file.clone();
        let w = Watched::new(
            "number",
            vec![file.clone()],
            Box::new(move || {
                let text = std::fs::read_to_string(&path).map_err(|e| AuthError::KeysFile {
                    path: "n".into(),
                    reason: e.to_string(),
                })?;
                text.trim().parse::<u32>().map_err(|e| AuthError::KeysFile {
                    path: "n".into(),
                    reason: e.to_string(),
                })
            }),
        )
        .unwrap();
        assert_eq!(*w.get(), 1);
        std::fs::write(&file, "22").unwrap();
        w.reload_now();
        assert_eq!(*w.get(), 22);
        assert_eq!(w.failure(), None);
        std::fs::write(&file, "not a number").unwrap();
        w.reload_now();
        assert_eq!(*w.get(), 22);
        assert!(w.failure().is_some_and(|f| f.contains("invalid digit")));
        std::fs::write(&file, "3").unwrap();
        w.reload_now();
        assert_eq!((*w.get(), w.failure()), (3, None));
    }
}
