"""The one way Python scripts provision, start, wait for and stop an inferd: the same steps,
the same readiness and the same checks as scripts/lib/inferd.sh (whose header says why).

    state = provision(BIN, work)                  # init work/state --listen 127.0.0.1:0 --json
    key = state.add_api_key("bench", "predict")   # a further key in the state's keys file
    r = attempt([BIN, "model", "add", ...])       # an inferd command that may be refused
    with start(state, work / "serve.log", {"INFERD_LOG_ACCESS": "false"}) as server:
        ...                                       # server.url, server.addr, server.port
        server.reload()                           # SIGHUP
        server.stop()                             # SIGTERM; exit status 0 or HarnessError

Ready means the "listening on" line named the address and the "ready in N ms" line followed
(models loaded and warmed up); both are info lines, the level `init` writes, so no caller may
override log.level. The server runs with INFERD_* and RUST_LOG removed from the environment
and the caller's overrides set instead. Leaving the `with` block with the server
still up (an exception) kills it. Python standard library only.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 120
STOP_TIMEOUT_S = 30
LISTENING = re.compile(r"listening on (https?://(\S+))")
READY = re.compile(r"ready in \d+ ms")


class HarnessError(RuntimeError):
    """The server could not be provisioned, started or stopped cleanly; says why, with the
    log's tail where there is one."""


def clean_env(overrides: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment without INFERD_* (the server refuses unknown ones) and
    RUST_LOG (the harness reads info lines), plus `overrides`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFERD_") and k != "RUST_LOG"}
    env.update(overrides or {})
    return env


def run(cmd: list[str]) -> str:
    """Runs an inferd subcommand in the clean environment; its stdout, or HarnessError."""
    r = attempt(cmd)
    if r.returncode != 0:
        raise HarnessError(f"{' '.join(cmd[:3])} exited {r.returncode}: {r.stderr.strip()}")
    return r.stdout


def attempt(cmd: list[str], timeout: float = START_TIMEOUT_S) -> subprocess.CompletedProcess:
    """Runs an inferd subcommand in the clean environment and returns how it ended (exit
    status, stdout, stderr as text), for callers that expect some commands to be refused."""
    return subprocess.run(cmd, env=clean_env(), capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=timeout)


@dataclass(frozen=True)
class State:
    """A provisioned state folder (what `inferd init --json` printed)."""

    binary: str
    dir: Path
    config: Path
    api_key: str
    ca_cert: Path

    def add_api_key(self, key_id: str, scope: str) -> str:
        """A new API key with this scope, appended to the keys file; read at the next start."""
        out = run([self.binary, "apikey", "new", "--id", key_id, "--scope", scope])
        key = re.search(r"^key \(shown once\): (\S+)$", out, re.M)
        if not key or "[[key]]" not in out:
            raise HarnessError(f"unexpected `apikey new` output: {out!r}")
        with (self.dir / "api_keys.toml").open("a") as f:
            f.write("\n" + out[out.index("[[key]]"):])
        return key.group(1)


def provision(binary: str | os.PathLike, work: Path, models: Path = REPO / "models") -> State:
    """`inferd init work/state --listen 127.0.0.1:0 --json`; the output is kept in init.json."""
    binary = str(Path(binary).resolve())
    if not os.access(binary, os.X_OK):
        raise HarnessError(f"not an executable: {binary}")
    state = Path(work) / "state"
    out = run([binary, "init", str(state), "--listen", "127.0.0.1:0", "--models", str(models),
               "--json"])
    (Path(work) / "init.json").write_text(out)
    d = json.loads(out)
    return State(binary, state, Path(d["config"]), d["api_key"], Path(d["ca_cert"]))


class Server:
    """One `inferd serve` process, spawned by the constructor; `wait_ready` before use."""

    def __init__(self, state: State, log: Path, overrides: dict[str, str] | None = None,
                 new_session: bool = False, preexec=None):
        self.log = Path(log)
        self.url = self.addr = ""
        self.ready_s = 0.0
        self.signalled = False
        self._read = 0    # bytes of the log already scanned
        self._text = ""   # log lines not yet complete
        self.started = time.perf_counter()
        with self.log.open("wb") as out:
            # new_session: the caller stops the whole group itself if it dies (bench.sh's trap).
            # preexec: run in the child before exec (attack_figures.py restores RLIMIT_NOFILE).
            self.proc = subprocess.Popen([state.binary, "serve", "--config", str(state.config)],
                                         env=clean_env(overrides), stdin=subprocess.DEVNULL,
                                         stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=new_session, preexec_fn=preexec)

    @property
    def host(self) -> str:
        return self.addr.rsplit(":", 1)[0]

    @property
    def port(self) -> int:
        return int(self.addr.rsplit(":", 1)[1])

    def wait_ready(self, timeout: float = START_TIMEOUT_S) -> "Server":
        """Returns once the log says ready; HarnessError if the process exits or time runs out."""
        deadline = self.started + timeout
        ready = False
        while not ready:
            for line in self._new_lines():
                m = LISTENING.search(line)
                if m and not self.url:
                    self.url, self.addr = m.group(1), m.group(2)
                ready = ready or bool(self.url and READY.search(line))
            if ready:
                break
            if self.proc.poll() is not None:
                raise HarnessError(f"inferd serve exited ({self.proc.returncode}) before it was "
                                   "ready" + self.tail())
            if time.perf_counter() > deadline:
                raise HarnessError(f"inferd serve not ready after {timeout:.0f} s" + self.tail())
            time.sleep(0.005)
        self.ready_s = time.perf_counter() - self.started
        return self

    def reload(self) -> None:
        """SIGHUP: the server rereads its config and models (the caller polls for the effect)."""
        if self.proc.poll() is not None:
            raise HarnessError(f"inferd serve exited ({self.proc.returncode}) before SIGHUP"
                               + self.tail())
        self.proc.send_signal(signal.SIGHUP)

    def terminate(self) -> None:
        """Sends SIGTERM if it still runs; `wait_stopped` then checks how it ended."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.signalled = True

    def wait_stopped(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Waits for the exit after SIGTERM; HarnessError unless it exits 0 in time (or if it
        had exited before the signal)."""
        if not self.signalled:
            raise HarnessError(f"inferd serve exited ({self.proc.poll()}) before SIGTERM"
                               + self.tail())
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise HarnessError(f"inferd serve still running {timeout:.0f} s after SIGTERM "
                               "(killed)" + self.tail()) from None
        if rc != 0:
            raise HarnessError(f"inferd serve exited {rc} after SIGTERM (want 0)" + self.tail())

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM, then `wait_stopped`."""
        self.terminate()
        self.wait_stopped(timeout)

    def kill(self) -> None:
        """SIGKILL and reap, if it still runs (its process group too, when it has its own)."""
        if self.proc.poll() is None:
            try:
                if os.getpgid(self.proc.pid) == self.proc.pid:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                else:
                    self.proc.kill()
            except ProcessLookupError:
                pass
            self.proc.wait()

    def tail(self, lines: int = 20) -> str:
        text = self.log.read_text(errors="replace").splitlines()[-lines:]
        return f"; last lines of {self.log}:\n" + "\n".join(text) if text else ""

    def _new_lines(self) -> list[str]:
        with self.log.open("rb") as f:
            f.seek(self._read)
            chunk = f.read()
        self._read += len(chunk)
        self._text += chunk.decode(errors="replace")
        *lines, self._text = self._text.split("\n")
        return lines

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc) -> None:
        self.kill()


def start(state: State, log: Path, overrides: dict[str, str] | None = None,
          timeout: float = START_TIMEOUT_S) -> Server:
    """Spawns `inferd serve` and returns it ready; kills it if it does not get there."""
    server = Server(state, log, overrides)
    try:
        return server.wait_ready(timeout)
    except BaseException:
        server.kill()
        raise
