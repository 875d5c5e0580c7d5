//! Service-manager notifications (`sd_notify` protocol): READY, RELOADING, STOPPING, STATUS
//! and watchdog pings to systemd's `Type=notify` unit. Without `NOTIFY_SOCKET` (a shell, a
//! container, a test) every call is a quiet no-op, and a failed send never fails the server.

use sd_notify::NotifyState;
use std::ffi::OsStr;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::time::Duration;

/// The shortest ping interval we accept, so that a tiny `WATCHDOG_USEC` cannot make the
/// watchdog thread spin.
const MIN_PING_EVERY: Duration = Duration::from_millis(10);

/// Where notifications go, and whether the service manager asked for watchdog pings.
///
/// Built once by `serve` with [`Notifier::from_env`] and cloned into the threads that report
/// state (the signal thread for reloads and shutdown). Tests build one with
/// [`Notifier::with_socket`] instead of touching the environment.
#[derive(Debug, Clone, Default)]
pub struct Notifier {
    socket: Option<PathBuf>,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET` and `WATCHDOG_USEC`/`WATCHDOG_PID`, as systemd sets them for a
    /// `Type=notify` service with `WatchdogSec=`. Outside systemd this yields a notifier that
    /// does nothing.
    pub fn from_env() -> Notifier {
        let socket = std::env::var_os("NOTIFY_SOCKET")
            .filter(|s| !s.is_empty())
            .map(PathBuf::from);
        let watchdog = sd_notify::watchdog_enabled().filter(|d| !d.is_zero());
        if socket.is_none() && watchdog.is_some() {
            log::debug!("WATCHDOG_USEC set without NOTIFY_SOCKET: no watchdog pings");
        }
        Notifier {
            watchdog: watchdog.filter(|_| socket.is_some()),
            socket,
        }
    }

    /// A notifier for an explicit socket path and watchdog interval (the full `WatchdogSec`,
    /// not the ping interval). For tests and for supervisors that pass the socket otherwise.
    pub fn with_socket(socket: impl Into<PathBuf>, watchdog: Option<Duration>) -> Notifier {
        Notifier {
            socket: Some(socket.into()),
            watchdog: watchdog.filter(|d| !d.is_zero()),
        }
    }

    /// Whether notifications go anywhere; `false` outside a `Type=notify` service.
    pub fn is_enabled(&self) -> bool {
        self.socket.is_some()
    }

    /// The `WatchdogSec` the service manager asked for, if any.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog
    }

    /// Call once the listener is bound and every model has run its warm-up inference:
    /// systemd then finishes `systemctl start` and starts units ordered after inferd.
    /// `status` is shown by `systemctl status`, e.g. "serving 2 models on 0.0.0.0:8443".
    pub fn ready(&self, status: &str) {
        self.send(&[NotifyState::Ready, NotifyState::Status(status)]);
    }

    /// Call when a SIGHUP reload begins, before re-reading anything; pair it with
    /// [`Notifier::reloaded`]. Carries `MONOTONIC_USEC`, which systemd 253+ requires with
    /// `RELOADING=1` for `Type=notify-reload` (harmless for `Type=notify`).
    pub fn reloading(&self) {
        match NotifyState::monotonic_usec_now() {
            Ok(now) => self.send(&[
                NotifyState::Reloading,
                now,
                NotifyState::Status("reloading configuration"),
            ]),
            Err(e) => {
                log::debug!("sd_notify: no monotonic time for RELOADING: {e}");
                self.send(&[
                    NotifyState::Reloading,
                    NotifyState::Status("reloading configuration"),
                ]);
            }
        }
    }

    /// Call when a reload has finished. `ok = false` means some file was rejected and the
    /// previous state is still serving: the service stays up, and the status line says so.
    pub fn reloaded(&self, ok: bool) {
        let status = if ok {
            "serving; reloaded"
        } else {
            "serving; reload rejected, previous state kept (see the log)"
        };
        self.send(&[NotifyState::Ready, NotifyState::Status(status)]);
    }

    /// Call on SIGTERM/SIGINT before draining, so systemd knows the exit that follows is
    /// intended and `TimeoutStopSec` starts counting.
    pub fn stopping(&self) {
        self.send(&[
            NotifyState::Stopping,
            NotifyState::Status("draining in-flight requests"),
        ]);
    }

    /// Starts one thread that sends `WATCHDOG=1` every half `WatchdogSec`, but only while
    /// `alive()` returns `true`: pass a check that the accept loop is still serving, so that
    /// a wedged server stops pinging and systemd restarts it. `alive` runs on the watchdog
    /// thread; it should be cheap and must not block for long (a blocked check also stops
    /// the pings, which is the point). Returns `false`, starting nothing, when no watchdog
    /// was asked for or the thread could not be created (logged).
    pub fn start_watchdog(&self, alive: impl Fn() -> bool + Send + 'static) -> bool {
        let Some(interval) = self.watchdog else {
            return false;
        };
        let every = (interval / 2).max(MIN_PING_EVERY);
        let notifier = self.clone();
        let spawned = std::thread::Builder::new()
            .name("inferd-watchdog".into())
            .spawn(move || {
                let mut was_alive = true;
                loop {
                    let now_alive = alive();
                    if now_alive {
                        notifier.send(&[NotifyState::Watchdog]);
                    }
                    if now_alive != was_alive {
                        if now_alive {
                            log::info!("watchdog: server responsive again, pings resumed");
                        } else {
                            log::warn!(
                                "watchdog: server not serving, withholding pings (systemd restarts inferd after {} s)",
                                interval.as_secs()
                            );
                        }
                        was_alive = now_alive;
                    }
                    std::thread::sleep(every);
                }
            });
        match spawned {
            Ok(_) => {
                log::debug!("watchdog: pinging every {} ms", every.as_millis());
                true
            }
            Err(e) => {
                log::warn!("no watchdog thread (systemd will restart inferd on its timeout): {e}");
                false
            }
        }
    }

    /// Sends one datagram; errors are logged at debug and otherwise ignored, because a
    /// missing service manager must never take the server down.
    fn send(&self, states: &[NotifyState]) {
        let Some(socket) = &self.socket else {
            return;
        };
        let mut message = String::new();
        for state in states {
            message.push_str(&state.to_string());
            message.push('\n');
        }
        if let Err(e) = send_to(socket.as_os_str(), message.as_bytes()) {
            log::debug!("sd_notify to {}: {e}", socket.display());
        }
    }
}

/// One datagram to a socket path, or to an abstract socket when the path starts with `@`
/// (systemd's convention for `NOTIFY_SOCKET`).
fn send_to(socket: &OsStr, message: &[u8]) -> std::io::Result<()> {
    let sender = UnixDatagram::unbound()?;
    let sent = match socket.as_encoded_bytes().strip_prefix(b"@") {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        Some(name) => {
            #[cfg(target_os = "android")]
            use std::os::android::net::SocketAddrExt;
            #[cfg(target_os = "linux")]
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            sender.send_to_addr(message, &addr)?
        }
        _ => sender.send_to(message, socket)?,
    };
    if sent == message.len() {
        Ok(())
    } else {
        Err(std::io::Error::new(
            std::io::ErrorKind::WriteZero,
            "short datagram",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A bound datagram socket standing in for systemd's notify socket.
    fn manager() -> (tempfile::TempDir, PathBuf, UnixDatagram) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        (dir, path, socket)
    }

    fn receive(socket: &UnixDatagram) -> String {
        let mut buf = [0u8; 4096];
        let n = socket.recv(&mut buf).unwrap();
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    #[test]
    fn ready_reload_and_stop_send_their_states() {
        let (_dir, path, socket) = manager();
        let notifier = Notifier::with_socket(&path, None);
        assert!(notifier.is_enabled());

        notifier.ready("serving 2 models");
        assert_eq!(receive(&socket), "READY=1\nSTATUS=serving 2 models\n");

        notifier.reloading();
        let reloading = receive(&socket);
        let lines: Vec<&str> = reloading.lines().collect();
        assert_eq!(lines[0], "RELOADING=1");
        let usec: u64 = lines[1]
            .strip_prefix("MONOTONIC_USEC=")
            .expect("MONOTONIC_USEC follows RELOADING")
            .parse()
            .unwrap();
        assert!(usec > 0);

        notifier.reloaded(true);
        assert!(receive(&socket).starts_with("READY=1\nSTATUS=serving; reloaded\n"));
        notifier.reloaded(false);
        assert!(receive(&socket).contains("previous state kept"));

        notifier.stopping();
        assert!(receive(&socket).starts_with("STOPPING=1\n"));
    }

    #[test]
    fn without_a_socket_every_call_is_a_quiet_no_op() {
        let notifier = Notifier::default();
        assert!(!notifier.is_enabled());
        notifier.ready("x");
        notifier.reloading();
        notifier.reloaded(false);
        notifier.stopping();
        assert!(!notifier.start_watchdog(|| true));
    }

    #[test]
    fn a_vanished_manager_does_not_fail_the_caller() {
        let (dir, path, socket) = manager();
        let notifier = Notifier::with_socket(&path, None);
        drop(socket);
        drop(dir);
        notifier.ready("nobody listens");
        notifier.stopping();
    }

    #[test]
    fn no_watchdog_thread_unless_asked_for() {
        let (_dir, path, _socket) = manager();
        let notifier = Notifier::with_socket(&path, None);
        assert_eq!(notifier.watchdog_interval(), None);
        assert!(!notifier.start_watchdog(|| true));
        let zero = Notifier::with_socket(&path, Some(Duration::ZERO));
        assert!(!zero.start_watchdog(|| true));
    }

    #[test]
    fn watchdog_pings_only_while_alive() {
        let (_dir, path, socket) = manager();
        let notifier = Notifier::with_socket(&path, Some(Duration::from_millis(40)));
        let checks = Arc::new(AtomicUsize::new(0));
        let seen = checks.clone();
        // Alive for the first three checks, then wedged for good.
        assert!(notifier.start_watchdog(move || seen.fetch_add(1, Ordering::SeqCst) < 3));
        for _ in 0..3 {
            assert_eq!(receive(&socket), "WATCHDOG=1\n");
        }
        // Wait until the thread has checked and found the server dead a few times: no ping.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while checks.load(Ordering::SeqCst) < 6 {
            assert!(
                std::time::Instant::now() < deadline,
                "watchdog stopped checking"
            );
            std::thread::yield_now();
        }
        socket.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 64];
        assert!(
            socket.recv(&mut buf).is_err(),
            "no ping once alive() is false"
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn abstract_socket_names_start_with_at() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("inferd-notify-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let socket = UnixDatagram::bind_addr(&addr).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        Notifier::with_socket(format!("@{name}"), None).stopping();
        assert!(receive(&socket).starts_with("STOPPING=1\n"));
    }
}
