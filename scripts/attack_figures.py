#!/usr/bin/env python3
"""Three attack figures against an inferd binary, each on a fresh server over loopback.

    scripts/attack_figures.py --bin PATH [--json] [--models DIR] [--max-connections N]

Provisions a throwaway state folder with the binary itself (`inferd init DIR --listen
127.0.0.1:0`, TLS on, CA in DIR/tls/ca.pem), then for each measurement starts a fresh
`inferd serve --config DIR/inferd.toml` through the scripts' harness
(scripts/lib/inferd_harness.py: every INFERD_* variable of this shell and RUST_LOG removed,
the address from its "listening on https://ADDR" log line, ready at "ready in"), runs the
attack, checks that /healthz still answers, stops it with SIGTERM and records how it exited
(0, or the harness's complaint).

  1 memory     VmHWM before and after 4 concurrent unauthenticated `POST /token` requests,
               each with a 4 MiB form body `a&a&a&...` (sent whole even if the server answers
               early).
  2 cpu        two TLS connections sending nothing but CRLF pairs (64 KiB writes) for 5 s or
               until the server closes them; the server's CPU seconds (utime+stime) from the
               start of the flood until 1 s after both ended or 5 s, whichever is later.
  3a slots     max_connections idle TCP connections from 127.0.0.1 (connect, send nothing),
               then 10 fresh TLS `GET /healthz` in a row from 127.0.0.2, 5 s timeout each.
  3b slots     the same with 300 slowloris connections from 127.0.0.1: plain TCP, never a TLS
               handshake, one byte of a request head ("G", "E", "T", ...) per second.
               (The attack connections' fate is reported too: rustls answers a first byte
               "G" with a TLS alert and closes, so these hold a slot only for milliseconds.)

max_connections is read from the provisioned config (256 when the key is absent) unless
--max-connections passes INFERD_LIMITS_MAX_CONNECTIONS to the servers. Python standard
library only; loopback only; every socket operation has a timeout and every wait a bound
(about 10 s against a healthy server; no measurement starts after 90 s, and each one's
waits are bounded, so a hung server costs a few minutes at most). Prints a table, or with
--json one JSON object.
"""

import argparse
import collections
import json
import os
import re
import resource
import select
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "lib"))
import inferd_harness as harness  # noqa: E402 (scripts/lib is not a package)

MIB = 1024 * 1024
TOKEN_BODY_BYTES = 4 * MIB
TOKEN_CONNECTIONS = 4
FLOOD_CONNECTIONS = 2
FLOOD_SECONDS = 5.0
PROBES = 10
PROBE_TIMEOUT = 5.0
SLOWLORIS = 300
SERVER_READY_TIMEOUT = 30.0
BUDGET_S = 90.0  # no new measurement starts after this; each one is bounded too
SERVER_STOP_TIMEOUT = 20.0
LOG_KEEP = 20000

LOG_RE = re.compile(r"^\[\S+\s+(TRACE|DEBUG|INFO|WARN|ERROR)\s+(\S+)\]\s?(.*)$")
ACCESS_RE = re.compile(r"^(\S+)\s+(\S+)\s+(\d{3})\b(?:.*?\(([^)]*)\)\s*$)?")
# A slowloris request head, one byte a second; longer than any run lasts.
DRIBBLE = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n" + b"X-Padding: x\r\n" * 200


# --- helpers --------------------------------------------------------------------------------


def outcome_of(e):
    """A short label for why a socket operation failed."""
    if isinstance(e, TimeoutError):
        return "timeout"
    if isinstance(e, ConnectionRefusedError):
        return "refused"
    if isinstance(e, (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)):
        return "reset"
    if isinstance(e, (ssl.SSLEOFError, ssl.SSLZeroReturnError)):
        return "closed"
    if isinstance(e, ssl.SSLError):
        return f"tls:{e.reason or e}"
    if isinstance(e, OSError):
        return f"error:{e.strerror or type(e).__name__}"
    return f"error:{type(e).__name__}"


def status_line(data):
    """The first line of an HTTP response, or None if `data` does not start with one."""
    if not data.startswith(b"HTTP/"):
        return None
    return data.split(b"\r\n", 1)[0].decode("latin-1")


def status_code(line):
    try:
        return int(line.split(" ")[1])
    except (AttributeError, IndexError, ValueError):
        return None


def read_response(sock, deadline, until_eof=False, limit=MIB):
    """Reads until the response head is complete (or EOF with `until_eof`) before `deadline`."""
    data = b""
    while len(data) < limit:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("deadline passed")
        sock.settimeout(left)
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
        if not until_eof and b"\r\n\r\n" in data:
            break
    return data


def proc_status_kb(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def proc_cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_nofile(pid):
    with open(f"/proc/{pid}/limits") as f:
        for line in f:
            if line.startswith("Max open files"):
                return int(line.split()[3])
    return None


def mb(kb):
    return round(kb / 1024, 1)


def peer_state(sock):
    """'open', 'closed' (FIN), 'reset' or 'error' for a non-blocking socket, and the bytes
    the server sent (read and returned, e.g. a TLS alert)."""
    got = b""
    while True:
        try:
            data = sock.recv(4096, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return "open", got
        except ConnectionResetError:
            return "reset", got
        except OSError:
            return "error", got
        if not data:
            return "closed", got
        got += data


def closed_label(state, got):
    """How the server ended an attack connection: 'closed', 'alert+closed' (a TLS alert
    record first), 'http+closed' (an HTTP answer first), 'reset', ..."""
    if not got:
        return state
    kind = "alert" if got[:1] == b"\x15" else "http" if got.startswith(b"HTTP/") else "data"
    return f"{kind}+{state}"


def summary_s(values):
    if not values:
        return None
    return {"min": round(min(values), 2), "median": round(statistics.median(values), 2),
            "max": round(max(values), 2)}


# --- the server -----------------------------------------------------------------------------


class Server:
    """One `inferd serve` process (the harness's), as the figures see it; its log is a file."""

    def __init__(self, state, log, overrides, preexec=None):
        self.log = log
        self.h = harness.Server(state, log, overrides, preexec=preexec)
        self.pid = self.h.proc.pid
        self.addr = None
        self.exit = None
        self.stop_s = None

    def wait_ready(self, timeout=SERVER_READY_TIMEOUT):
        """Returns (host, port) once "ready in" is logged; raises if it never is."""
        self.h.wait_ready(timeout)
        self.addr = (self.h.host.strip("[]"), self.h.port)
        return self.addr

    def alive(self):
        return self.h.proc.poll() is None

    def stop(self):
        """SIGTERM, then wait; records the exit (0, or why not) and how long it took."""
        if self.alive():
            started = time.monotonic()
            try:
                self.h.stop(SERVER_STOP_TIMEOUT)
                self.exit = 0
            except harness.HarnessError as e:
                self.exit = str(e).split(";")[0]
            self.stop_s = round(time.monotonic() - started, 2)
        elif self.exit is None:
            self.exit = f"died before SIGTERM ({self.h.proc.returncode})"

    def kill(self):
        self.h.kill()

    def log_summary(self):
        """Access-log statuses (with the HTTP layer's reasons) and every WARN/ERROR line,
        grouped with digits blanked."""
        access = collections.Counter()
        notable = collections.Counter()
        samples = {}
        with open(self.log, errors="replace") as f:
            lines = f.read().splitlines()
        for line in lines[:LOG_KEEP]:
            m = LOG_RE.match(line)
            if not m:
                continue
            level, target, msg = m.groups()
            if target.startswith("inferd::access"):
                a = ACCESS_RE.match(msg)
                if a:
                    key = f"{a.group(1)} {a.group(2)} {a.group(3)}"
                    if a.group(4):
                        key += f" ({re.sub(r'[0-9]+', 'N', a.group(4))})"
                    access[key] += 1
            elif level in ("WARN", "ERROR"):
                key = f"{level} {target}: {re.sub(r'[0-9]+', 'N', msg)}"
                notable[key] += 1
                samples.setdefault(key, line)
        return {
            "lines": len(lines),
            "access": dict(access.most_common()),
            "warn_error": [{"count": n, "first": samples[k]} for k, n in notable.most_common()],
        }


def healthz(addr, ctx, source="127.0.0.1", timeout=PROBE_TIMEOUT):
    """One fresh TLS connection doing GET /healthz: (outcome, seconds, status line)."""
    started = time.monotonic()
    deadline = started + timeout
    sock = None
    line = None
    try:
        sock = socket.create_connection(addr, timeout=timeout, source_address=(source, 0))
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        sock = ctx.wrap_socket(sock, server_hostname="localhost")
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        data = read_response(sock, deadline)
        line = status_line(data)
        code = status_code(line)
        outcome = str(code) if code else ("closed" if not data else "garbage")
    except Exception as e:  # noqa: BLE001 - every failure is an outcome
        outcome = outcome_of(e)
    finally:
        if sock is not None:
            sock.close()
    return outcome, time.monotonic() - started, line


def healthz_after(addr, ctx):
    """Whether the server serves again once the attack stopped: up to 3 tries, 0.5 s apart."""
    for attempt in range(1, 4):
        outcome, took, _ = healthz(addr, ctx)
        if outcome == "200":
            break
        time.sleep(0.5)
    return {"outcome": outcome, "attempts": attempt, "seconds": round(took, 3)}


# --- figure 1: memory -----------------------------------------------------------------------


def token_post(addr, ctx, barrier, rec):
    body_chunk = b"a&" * (32 * 1024)  # 64 KiB; 64 of them make exactly 4 MiB
    head = (b"POST /token HTTP/1.1\r\nHost: localhost\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: " + str(TOKEN_BODY_BYTES).encode() + b"\r\n"
            b"Connection: close\r\n\r\n")
    sock = None
    try:
        sock = socket.create_connection(addr, timeout=10)
        sock = ctx.wrap_socket(sock, server_hostname="localhost")
        barrier.wait(timeout=30)
        sock.settimeout(20)
        try:
            sock.sendall(head)
            while rec["sent"] < TOKEN_BODY_BYTES:
                sock.sendall(body_chunk)
                rec["sent"] += len(body_chunk)
        except Exception as e:  # noqa: BLE001 - the server may answer early and close
            rec["send_error"] = outcome_of(e)
        try:
            data = read_response(sock, time.monotonic() + 30, until_eof=True)
            rec["status"] = status_line(data) or ("closed" if not data else "garbage")
        except Exception as e:  # noqa: BLE001
            rec["status"] = outcome_of(e)
    except Exception as e:  # noqa: BLE001
        barrier.abort()
        rec["status"] = outcome_of(e)
    finally:
        if sock is not None:
            sock.close()
        rec["seconds"] = round(time.monotonic() - rec["started"], 2)


def figure_memory(server, ctx):
    pid = server.pid
    hwm0, rss0 = proc_status_kb(pid, "VmHWM"), proc_status_kb(pid, "VmRSS")
    barrier = threading.Barrier(TOKEN_CONNECTIONS)
    recs = [{"sent": 0, "status": None, "started": time.monotonic()}
            for _ in range(TOKEN_CONNECTIONS)]
    threads = [threading.Thread(target=token_post, args=(server.addr, ctx, barrier, r))
               for r in recs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=90)
    alive = server.alive()
    hwm1 = proc_status_kb(pid, "VmHWM") if alive else None
    rss1 = proc_status_kb(pid, "VmRSS") if alive else None
    return {
        "vmhwm_before_mb": mb(hwm0), "vmrss_before_mb": mb(rss0),
        "vmhwm_after_mb": mb(hwm1) if alive else None,
        "vmrss_after_mb": mb(rss1) if alive else None,
        "vmhwm_growth_mb": mb(hwm1 - hwm0) if alive else None,
        "requests": [{k: v for k, v in r.items() if k != "started"} for r in recs],
        "threads_unfinished": sum(t.is_alive() for t in threads),
        "alive_after": alive,
    }


# --- figure 2: CPU --------------------------------------------------------------------------


def crlf_flood(addr, ctx, barrier, start, rec):
    chunk = b"\r\n" * (32 * 1024)  # 64 KiB
    sock = None
    try:
        sock = socket.create_connection(addr, timeout=10)
        sock = ctx.wrap_socket(sock, server_hostname="localhost")
        barrier.wait(timeout=30)
        end = start["t"] + FLOOD_SECONDS
        sock.settimeout(0.2)
        rec["ended"] = "open at 5 s"
        received = b""
        while time.monotonic() < end:
            try:
                rec["bytes_sent"] += sock.send(chunk)
            except TimeoutError:
                pass  # the server reads slower than we write; retry the same bytes
            except Exception as e:  # noqa: BLE001
                rec["ended"] = f"server closed ({outcome_of(e)})"
                break
            if sock.pending() or select.select([sock], [], [], 0)[0]:
                try:
                    data = sock.recv(4096)
                except TimeoutError:
                    continue  # a TLS record that was not application data (session ticket)
                except Exception as e:  # noqa: BLE001
                    rec["ended"] = f"server closed ({outcome_of(e)})"
                    break
                if not data:
                    rec["ended"] = "server closed (eof)"
                    break
                received += data
        rec["ended_at"] = time.monotonic()
        if rec["ended"].startswith("server closed") or received:
            try:  # whatever the server still has for us, briefly
                received += read_response(sock, time.monotonic() + 0.5, until_eof=True)
            except Exception:  # noqa: BLE001
                pass
        rec["status"] = status_line(received)
        rec["bytes_received"] = len(received)
    except Exception as e:  # noqa: BLE001
        barrier.abort()
        rec["ended"] = f"failed before the flood ({outcome_of(e)})"
    finally:
        rec.setdefault("ended_at", time.monotonic())
        if sock is not None:
            sock.close()


def figure_cpu(server, ctx):
    pid = server.pid
    start = {}

    def mark_start():
        start["cpu"] = proc_cpu_seconds(pid)
        start["t"] = time.monotonic()

    barrier = threading.Barrier(FLOOD_CONNECTIONS, action=mark_start)
    recs = [{"bytes_sent": 0, "ended": None} for _ in range(FLOOD_CONNECTIONS)]
    threads = [threading.Thread(target=crlf_flood, args=(server.addr, ctx, barrier, start, r))
               for r in recs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=FLOOD_SECONDS + 40)
    if "t" not in start:
        return {"error": "the flood never started", "connections": recs}
    window_end = max(max(r["ended_at"] for r in recs) + 1.0, start["t"] + FLOOD_SECONDS)
    time.sleep(max(0.0, window_end - time.monotonic()))
    alive = server.alive()
    cpu = proc_cpu_seconds(pid) - start["cpu"] if alive else None
    wall = time.monotonic() - start["t"]
    after = None
    if alive:  # not part of the figure: does the server keep burning once we stopped?
        c0 = proc_cpu_seconds(pid)
        time.sleep(1.0)
        after = round(proc_cpu_seconds(pid) - c0, 2)
    return {
        "cpu_s": round(cpu, 2) if cpu is not None else None,
        "wall_s": round(wall, 2),
        "cores": round(cpu / wall, 2) if cpu is not None else None,
        "cpu_next_1s": after,
        "connections": [{
            "bytes_sent": r["bytes_sent"],
            "mb_sent": round(r["bytes_sent"] / MIB, 1),
            "ended": r["ended"],
            "ended_after_s": round(r["ended_at"] - start["t"], 2),
            "status": r.get("status"),
            "bytes_received": r.get("bytes_received"),
        } for r in recs],
        "threads_unfinished": sum(t.is_alive() for t in threads),
        "alive_after": alive,
    }


# --- figure 3: connection slots -------------------------------------------------------------


class Attackers:
    """`count` plain TCP connections from 127.0.0.1, kept open (idle, or dribbling one byte of
    a request head a second); a thread watches when the server closes each one."""

    def __init__(self, addr, count, dribble):
        self.dribble = dribble
        self.socks = []
        self.connect_failures = collections.Counter()
        self.closed_at = {}  # index -> (seconds since the first connect, how)
        self.stop_event = threading.Event()
        self.t0 = time.monotonic()
        for _ in range(count):
            try:
                s = socket.create_connection(addr, timeout=5, source_address=("127.0.0.1", 0))
                s.setblocking(False)
                if dribble:
                    s.send(DRIBBLE[:1])
                self.socks.append(s)
            except Exception as e:  # noqa: BLE001
                self.connect_failures[outcome_of(e)] += 1
        self.open_s = time.monotonic() - self.t0
        self.sent = [1 if dribble else 0] * len(self.socks)
        self.received = [b""] * len(self.socks)
        self.lock = threading.Lock()
        self.watcher = threading.Thread(target=self._watch, name="attackers", daemon=True)
        self.watcher.start()

    def _watch(self):
        tick = 0
        while not self.stop_event.wait(0.5):
            tick += 1
            self.scan(send=self.dribble and tick % 2 == 0)

    def scan(self, send=False):
        """Notes every connection the server has ended; with `send`, dribbles the next byte
        on the others."""
        with self.lock:
            for i, s in enumerate(self.socks):
                if i in self.closed_at:
                    continue
                state, got = peer_state(s)
                self.received[i] += got
                if state != "open":
                    self.closed_at[i] = (time.monotonic() - self.t0,
                                         closed_label(state, self.received[i]))
                    continue
                if send:
                    try:
                        s.send(DRIBBLE[self.sent[i] % len(DRIBBLE):][:1])
                        self.sent[i] += 1
                    except BlockingIOError:
                        pass
                    except OSError as e:
                        self.closed_at[i] = (time.monotonic() - self.t0, outcome_of(e))

    def stop(self):
        self.stop_event.set()
        self.watcher.join(timeout=10)
        for s in self.socks:
            s.close()

    def report(self):
        """Right after the last probe: what the attack connections had become by then."""
        self.scan()
        closed = [t for t, _ in self.closed_at.values()]
        return {
            "connected": len(self.socks),
            "connect_failures": dict(self.connect_failures),
            "open_s": round(self.open_s, 2),
            "closed_by_server_by_last_probe": len(closed),
            "still_open_after_probes": len(self.socks) - len(closed),
            "closed_by_server_at_s": summary_s(closed),
            "how_closed": dict(collections.Counter(h for _, h in self.closed_at.values())),
            "bytes_dribbled_max": max(self.sent, default=0) if self.dribble else 0,
        }


def figure_slots(server, ctx, count, dribble):
    attackers = Attackers(server.addr, count, dribble)
    try:
        probes = []
        started = time.monotonic()
        for _ in range(PROBES):
            outcome, took, _ = healthz(server.addr, ctx, source="127.0.0.2")
            probes.append({"outcome": outcome, "s": round(took, 3),
                           "at_s": round(time.monotonic() - attackers.t0, 2)})
        probe_s = time.monotonic() - started
        report = attackers.report()
    finally:
        attackers.stop()
    outcomes = collections.Counter(p["outcome"] for p in probes)
    alive = server.alive()
    return {
        "attack": "slowloris (1 byte/s, plain TCP)" if dribble else "idle TCP",
        "attack_connections": count,
        "attackers": report,
        "probes_ok": outcomes.get("200", 0),
        "probes": PROBES,
        "outcomes": dict(outcomes.most_common()),
        "probe_total_s": round(probe_s, 2),
        "probe_detail": probes,
        "alive_after": alive,
    }


# --- driver ---------------------------------------------------------------------------------


def raise_nofile(needed):
    """Raises this process's soft RLIMIT_NOFILE if needed; returns the limits the servers
    should get (the original ones), or None when nothing changed."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return None
    target = needed if hard == resource.RLIM_INFINITY else min(hard, needed)
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return soft, hard


def run_measurement(name, fn, state, overrides, ctx, preexec, began):
    if time.monotonic() - began > BUDGET_S:
        return {"error": f"skipped: over the {BUDGET_S:.0f} s budget", "log": {"lines": 0,
                "access": {}, "warn_error": []}}
    server = Server(state, state.dir.parent / f"serve-{name.replace(' ', '-')}.log", overrides,
                    preexec)
    result = {}
    try:
        started = time.monotonic()
        server.wait_ready()
        result["ready_s"] = round(time.monotonic() - started, 2)
        result["server_nofile"] = proc_nofile(server.pid)
        result.update(fn(server, ctx))
        result["healthz_after"] = healthz_after(server.addr, ctx) if server.alive() else None
        server.stop()
        result["exit"] = server.exit
        result["stop_s"] = server.stop_s
    except Exception as e:  # noqa: BLE001 - reported, and the next measurement still runs
        result["error"] = f"{type(e).__name__}: {e}"
    finally:
        server.kill()
        result["log"] = server.log_summary()
    print(f"[{name} done]", file=sys.stderr, flush=True)
    return result


def human(report):
    out = []
    w = out.append
    w(f"inferd attack figures: {report['binary']} ({report['version']})")
    w(f"max_connections {report['max_connections']} ({report['max_connections_source']}); "
      f"{report['cores']} cores; total {report['total_s']} s")
    m = report["memory"]
    if "error" in m:
        w(f"1  memory        ERROR {m['error']}")
    else:
        statuses = collections.Counter(r["status"] for r in m["requests"])
        sent = sorted({r["sent"] for r in m["requests"]})
        w(f"1  memory        VmHWM {m['vmhwm_before_mb']} MB -> {m['vmhwm_after_mb']} MB "
          f"(+{m['vmhwm_growth_mb']} MB), VmRSS after {m['vmrss_after_mb']} MB; "
          f"{TOKEN_CONNECTIONS} x 4 MiB POST /token: "
          + ", ".join(f"{k} x{n}" for k, n in statuses.items())
          + f"; body bytes sent {sent}")
    c = report["cpu"]
    if "error" in c:
        w(f"2  cpu           ERROR {c['error']}")
    else:
        w(f"2  cpu           {c['cpu_s']} CPU-s over {c['wall_s']} s wall = {c['cores']} cores "
          f"(next 1 s: {c['cpu_next_1s']} CPU-s)")
        for i, k in enumerate(c["connections"]):
            w(f"   conn {i + 1}        {k['mb_sent']} MiB sent, {k['ended']} after "
              f"{k['ended_after_s']} s, status {k['status']}")
    for key, label in (("slots_idle", "3a idle"), ("slots_slowloris", "3b slowloris")):
        s = report[key]
        if "error" in s:
            w(f"{label:14}ERROR {s['error']}")
            continue
        a = s["attackers"]
        w(f"{label:14}{a['connected']} conns from 127.0.0.1 (opened in {a['open_s']} s): "
          f"healthz from 127.0.0.2 {s['probes_ok']}/{s['probes']} x 200 in "
          f"{s['probe_total_s']} s; outcomes "
          + ", ".join(f"{k} x{n}" for k, n in s["outcomes"].items()))
        w(f"              attack conns closed by the server by the last probe: "
          f"{a['closed_by_server_by_last_probe']}, still open "
          f"{a['still_open_after_probes']} (closed at s: {a['closed_by_server_at_s']}; how: "
          f"{a['how_closed']})")
    w("servers:")
    for key in ("memory", "cpu", "slots_idle", "slots_slowloris"):
        r = report[key]
        w(f"  {key:16} ready {r.get('ready_s')} s, alive after {r.get('alive_after')}, "
          f"healthz after {r.get('healthz_after')}, exit {r.get('exit')} "
          f"(stop {r.get('stop_s')} s), {r['log']['lines']} log lines")
        for k, n in list(r["log"]["access"].items())[:6]:
            w(f"      access  {n:5} x {k}")
        for item in r["log"]["warn_error"][:6]:
            w(f"      {item['count']:5} x {item['first']}")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", required=True, help="the inferd binary to measure")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--models", default=str(Path(__file__).resolve().parent.parent / "models"),
                    help="models folder for the config (default: this repository's)")
    ap.add_argument("--max-connections", type=int,
                    help="pass INFERD_LIMITS_MAX_CONNECTIONS (default: read the config)")
    args = ap.parse_args()
    args.bin = str(Path(args.bin).resolve())
    began = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="inferd-attack-"))
    try:
        state = harness.provision(args.bin, tmp, Path(args.models).resolve())
        if args.max_connections is not None:
            max_conn, source = args.max_connections, "INFERD_LIMITS_MAX_CONNECTIONS"
        else:
            with open(state.config, "rb") as f:
                limits = tomllib.load(f).get("limits", {})
            max_conn = limits.get("max_connections", 256)
            source = "config" if "max_connections" in limits else "default (key absent)"
        original = raise_nofile(max(max_conn, SLOWLORIS) + 256)
        preexec = None
        if original is not None:  # the servers keep the limits this shell gave us
            preexec = lambda: resource.setrlimit(resource.RLIMIT_NOFILE, original)  # noqa: E731
        overrides = ({} if args.max_connections is None
                     else {"INFERD_LIMITS_MAX_CONNECTIONS": str(args.max_connections)})
        ctx = ssl.create_default_context(cafile=str(state.ca_cert))
        version = subprocess.run([args.bin, "--version"], capture_output=True, text=True,
                                 timeout=30).stdout.strip()
        report = {"binary": args.bin, "version": version, "cores": os.cpu_count(),
                  "max_connections": max_conn, "max_connections_source": source}
        report["memory"] = run_measurement("memory", figure_memory, state, overrides, ctx,
                                           preexec, began)
        report["cpu"] = run_measurement("cpu", figure_cpu, state, overrides, ctx, preexec,
                                        began)
        report["slots_idle"] = run_measurement(
            "slots idle", lambda s, c: figure_slots(s, c, max_conn, dribble=False),
            state, overrides, ctx, preexec, began)
        report["slots_slowloris"] = run_measurement(
            "slots slowloris", lambda s, c: figure_slots(s, c, SLOWLORIS, dribble=True),
            state, overrides, ctx, preexec, began)
        report["total_s"] = round(time.monotonic() - began, 1)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(report, indent=2) if args.json else human(report))
    failed = [k for k in ("memory", "cpu", "slots_idle", "slots_slowloris")
              if "error" in report[k] or report[k].get("exit") != 0]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
