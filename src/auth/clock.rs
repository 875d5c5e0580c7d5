//! Clock sanity for boards without a real-time clock. Such boards boot in the past (often
//! 1970, or the image's date) until NTP or a GNSS fix sets them, and a clock that is behind
//! makes expired tokens look valid. inferd keeps a floor: the later of its own build time
//! and the last time it saw (persisted in the state folder). Below the floor the clock is
//! untrusted and, under the default policy, bearer tokens are refused and none are issued,
//! while API keys and client certificates keep working.

use crate::config::ClockPolicy;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Unix seconds at which this binary was built (see build.rs).
pub const BUILD_UNIX: u64 = match u64::from_str_radix(env!("BUILT_AT_UNIX"), 10) {
    Ok(t) => t,
    Err(_) => 0,
};

// build.rs always sets a real time; a zero here would disable the floor silently.
const _: () = assert!(
    BUILD_UNIX > 1_600_000_000,
    "build.rs must set BUILT_AT_UNIX"
);

/// How far a running clock may step back below the last trusted reading (NTP corrections)
/// before tokens are refused.
const STEP_BACK_SLACK: Duration = Duration::from_secs(300);

/// How often the last-seen time is written back (at most).
const PERSIST_EVERY: Duration = Duration::from_secs(600);
const STATE_FILE: &str = "clock-last-seen";

type NowFn = Box<dyn Fn() -> SystemTime + Send + Sync>;

/// The clock, its floor and its policy.
pub struct Clock {
    policy: ClockPolicy,
    now: NowFn,
    /// Unix seconds the clock must not read below; raised as trusted time passes.
    floor: AtomicU64,
    state_file: Option<PathBuf>,
    persisted: AtomicU64,
    write_lock: Mutex<()>,
    warned: AtomicBool,
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn date(secs: u64) -> String {
    httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(secs))
}

impl Clock {
    /// The system clock, floored by the build time and by `state_dir`'s last-seen record.
    pub fn system(policy: ClockPolicy, state_dir: Option<PathBuf>) -> Clock {
        Clock::with(policy, state_dir, BUILD_UNIX, Box::new(SystemTime::now))
    }

    /// A clock with an injected time source and build floor (tests).
    pub fn with(
        policy: ClockPolicy,
        state_dir: Option<PathBuf>,
        build_unix: u64,
        now: NowFn,
    ) -> Clock {
        let state_file = state_dir.map(|d| d.join(STATE_FILE));
        let last_seen = state_file
            .as_ref()
            .and_then(|f| std::fs::read_to_string(f).ok())
            .and_then(|s| s.trim().parse::<u64>().ok())
            .unwrap_or(0);
        Clock {
            policy,
            now,
            floor: AtomicU64::new(build_unix.max(last_seen)),
            state_file,
            persisted: AtomicU64::new(last_seen),
            write_lock: Mutex::new(()),
            warned: AtomicBool::new(false),
        }
    }

    /// The current time, whatever it is worth.
    pub fn now(&self) -> SystemTime {
        (self.now)()
    }

    /// The current time if it can be trusted for token lifetimes; otherwise why not.
    /// A trusted reading is remembered (every 10 minutes) as the new floor.
    pub fn trusted_now(&self) -> Result<SystemTime, String> {
        let now = self.now();
        let secs = unix(now);
        let floor = self.floor.load(Ordering::Relaxed);
        if self.policy == ClockPolicy::RefuseTokens && secs < floor {
            let reason = format!(
                "clock reads {} but inferd was built or last ran at {}: refusing bearer tokens until the clock is set (API keys and client certificates still work)",
                date(secs),
                date(floor)
            );
            if !self.warned.swap(true, Ordering::Relaxed) {
                log::error!("{reason}");
            }
            return Err(reason);
        }
        if self.warned.swap(false, Ordering::Relaxed) {
            log::info!("clock reads {} again: bearer tokens accepted", date(secs));
        }
        self.remember(secs);
        Ok(now)
    }

    /// For readiness detail: `None` when trusted.
    pub fn problem(&self) -> Option<String> {
        let secs = unix(self.now());
        let floor = self.floor.load(Ordering::Relaxed);
        (self.policy == ClockPolicy::RefuseTokens && secs < floor).then(|| {
            format!(
                "clock reads {}, before {} (build or last run)",
                date(secs),
                date(floor)
            )
        })
    }

    fn remember(&self, secs: u64) {
        if secs < self.persisted.load(Ordering::Relaxed) + PERSIST_EVERY.as_secs() {
            return;
        }
        let Ok(_guard) = self.write_lock.try_lock() else {
            return;
        };
        self.persisted.store(secs, Ordering::Relaxed);
        // A clock set back while running is caught as it would be after a restart; the
        // slack lets NTP step a clock back by a little without refusing tokens.
        self.floor.fetch_max(
            secs.saturating_sub(STEP_BACK_SLACK.as_secs()),
            Ordering::Relaxed,
        );
        let Some(file) = &self.state_file else { return };
        if let Err(e) = crate::atomic_file::write(file, format!("{secs}\n").as_bytes(), 0o644) {
            log::warn!("cannot record the last-seen time: {}: {e}", file.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn at(secs: u64) -> NowFn {
        let t = Arc::new(AtomicU64::new(secs));
        Box::new(move || UNIX_EPOCH + Duration::from_secs(t.load(Ordering::Relaxed)))
    }

    /// A clock whose time the test can move.
    fn movable(secs: u64) -> (NowFn, Arc<AtomicU64>) {
        let t = Arc::new(AtomicU64::new(secs));
        let read = t.clone();
        let now: NowFn =
            Box::new(move || UNIX_EPOCH + Duration::from_secs(read.load(Ordering::Relaxed)));
        (now, t)
    }

    #[test]
    fn a_clock_set_back_while_running_is_caught_without_a_restart() {
        let (now, t) = movable(2_000_000_000);
        let clock = Clock::with(ClockPolicy::RefuseTokens, None, 100, now);
        assert!(clock.trusted_now().is_ok());
        // NTP stepping back a little is fine.
        t.store(2_000_000_000 - 60, Ordering::Relaxed);
        assert!(clock.trusted_now().is_ok());
        // A clock set back by days (spoofed NTP, a GNSS glitch) is not.
        t.store(1_900_000_000, Ordering::Relaxed);
        assert!(clock.trusted_now().is_err());
        assert!(clock.problem().is_some());
        // Forward again: trusted, and the floor keeps rising with it.
        t.store(2_000_100_000, Ordering::Relaxed);
        assert!(clock.trusted_now().is_ok());
        t.store(2_000_000_000, Ordering::Relaxed);
        assert!(clock.trusted_now().is_err());
    }

    #[test]
    fn a_clock_before_the_build_is_untrusted() {
        let clock = Clock::with(ClockPolicy::RefuseTokens, None, 1_800_000_000, at(1_000));
        assert!(
            clock
                .trusted_now()
                .unwrap_err()
                .contains("refusing bearer tokens")
        );
        assert!(clock.problem().is_some());
        let clock = Clock::with(
            ClockPolicy::RefuseTokens,
            None,
            1_800_000_000,
            at(1_800_000_001),
        );
        assert!(clock.trusted_now().is_ok());
        assert!(clock.problem().is_none());
    }

    #[test]
    fn ignore_policy_trusts_any_clock() {
        let clock = Clock::with(ClockPolicy::Ignore, None, 1_800_000_000, at(1_000));
        assert!(clock.trusted_now().is_ok());
    }

    #[test]
    fn last_seen_time_is_persisted_and_becomes_the_floor() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Clock::with(
            ClockPolicy::RefuseTokens,
            Some(dir.path().into()),
            100,
            at(2_000_000_000),
        );
        assert!(clock.trusted_now().is_ok());
        // A reboot with the clock back in the past: the recorded time is the floor now.
        let rebooted = Clock::with(
            ClockPolicy::RefuseTokens,
            Some(dir.path().into()),
            100,
            at(1_900_000_000),
        );
        assert!(rebooted.trusted_now().is_err());
        let later = Clock::with(
            ClockPolicy::RefuseTokens,
            Some(dir.path().into()),
            100,
            at(2_000_000_100),
        );
        assert!(later.trusted_now().is_ok());
    }
}
