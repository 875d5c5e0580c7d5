#!/usr/bin/env python3
"""End-to-end benchmark driver for scripts/bench.sh: inferd against the reference FastAPI stack.

For each transport (plain HTTP, then TLS) it starts inferd (both bundled models; provisioned,
started and stopped by scripts/lib/inferd_harness.py, as every script does) and one reference
process per model, times each from spawn to ready (inferd: its "ready in" log line, the
harness's one test of readiness; the reference: its first 200 on /health), reads idle RSS,
then drives every workload at every concurrency with wrk, inferd and reference back to back,
recording req/s, p50/p99, errors, server CPU per request, peak RSS and (inferd) mean
inference time from /metrics. Prints and writes a Markdown report and a JSON file.

Only 127.0.0.1; every load is bounded (wrk -d plus a hard timeout). Python standard library only.
Servers run in their own sessions; their process groups are listed in WORK/pgids until stopped,
so that bench.sh's trap can end them even if this driver dies.
"""
from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import re
import resource
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "scripts" / "lib"))
import inferd_harness as harness  # noqa: E402 (scripts/lib is not a package)

LUA = HERE / "post_json.lua"
TICK = os.sysconf("SC_CLK_TCK")
CORES = os.cpu_count() or 1

# The same digit (label 0) and the same sentence for both servers.
DIGIT = [0, 0, 5, 13, 9, 1, 0, 0, 0, 0, 13, 15, 10, 15, 5, 0, 0, 3, 15, 2, 0, 11, 8, 0, 0, 4, 12, 0,
         0, 8, 8, 0, 0, 5, 8, 0, 0, 9, 8, 0, 0, 4, 11, 0, 1, 12, 7, 0, 0, 2, 14, 5, 10, 12, 0, 0, 0, 0,
         6, 13, 10, 0, 0, 0]
DIGIT_DATA = ",".join(f"{float(v)}" for v in DIGIT)
SENTENCE = "The battery lasts all day and the screen is bright, but the camera struggles in low light."


@dataclass(frozen=True)
class Route:
    path: str
    body: str


# workload -> (inferd's route, the reference's route, the model both serve)
WORKLOADS = {
    "tensor": (Route("/v2/models/digits/infer",
                     '{"inputs":[{"name":"input","shape":[1,64],"datatype":"FP32","data":[%s]}]}' % DIGIT_DATA),
               Route("/predict_tensor", '{"inputs":[[%s]]}' % DIGIT_DATA), "digits"),
    "text": (Route("/predict", json.dumps({"text": SENTENCE})),
             Route("/predict", json.dumps({"text": SENTENCE})), "sentiment"),
}
# Latency by text length, at c=1 only: "good" is one token, so N - 2 of them make N tokens with
# [CLS] and [SEP] (checked against the model's tokenizer before the run).
TEXT_LENGTHS = (16, 64, 128)
for _n in TEXT_LENGTHS:
    _body = json.dumps({"text": " ".join(["good"] * (_n - 2))})
    WORKLOADS[f"text{_n}"] = (Route("/predict", _body), Route("/predict", _body), "sentiment")


def log(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


# --- /proc -------------------------------------------------------------------------------------
def proc_tree(root: int) -> list[int]:
    """root and its descendants (uvicorn --workers N: a supervisor and N spawned workers)."""
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                stat = Path(f"/proc/{d}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(d))
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of these processes, all their threads included."""
    total = 0
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / TICK


def rss_kib(pids: list[int], key: str = "VmRSS") -> int:
    total = 0
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith(key + ":"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def machine_busy() -> tuple[int, int]:
    """(busy, total) jiffies over all CPUs, counted as wait_quiet.sh counts them."""
    v = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    return sum(v) - v[3] - v[4], sum(v)


class RssSampler(threading.Thread):
    """Peak RSS sum of a process tree, sampled every 100 ms while a load runs."""

    def __init__(self, pids: list[int]):
        super().__init__(daemon=True)
        self.pids, self.peak, self.done = pids, rss_kib(pids), threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.1):
            self.peak = max(self.peak, rss_kib(self.pids))

    def stop(self) -> int:
        self.done.set()
        self.join()
        return max(self.peak, rss_kib(self.pids))


# --- wrk ---------------------------------------------------------------------------------------
def parse_wrk(out: str, connections: int) -> dict:
    """wrk's summary, with p50/p99/mean from its histogram without wrk's correction."""
    def ms(v: str) -> float:  # wrk's "812.00us", "1.24ms", "2.00s", "1.10m"
        number, unit = re.fullmatch(r"([\d.]+)([a-z]+)", v).groups()
        return float(number) * {"us": 0.001, "ms": 1, "s": 1000, "m": 60000}[unit]

    def grab(pattern: str, default: str = "0") -> str:
        m = re.search(pattern, out, re.M)
        return m.group(1) if m else default

    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    h = re.search(r"^HIST duration_us=(\d+) requests=(\d+) ?(\S*)$", out, re.M)
    if not h:
        raise RuntimeError("wrk printed no HIST line (post_json.lua's done())")
    duration_us, requests = int(h.group(1)), int(h.group(2))
    printed = {int(v): int(n) for v, n in (pair.split(":") for pair in h.group(3).split(",") if pair)}
    per_conn = requests // connections
    hist = uncorrect(printed, duration_us // per_conn) if per_conn else printed
    return {
        "rps": float(grab(r"^Requests/sec:\s+(\S+)")),
        "requests": requests,
        "duration_s": duration_us / 1e6,
        "samples": sum(hist.values()),
        "p50_ms": percentile(hist, 50) / 1000,
        "p99_ms": percentile(hist, 99) / 1000,
        "mean_ms": sum(v * n for v, n in hist.items()) / max(sum(hist.values()), 1) / 1000,
        "wrk_p50_ms": ms(grab(r"^\s+50%\s+(\S+)", "0ms")),  # as wrk prints them (corrected)
        "wrk_p99_ms": ms(grab(r"^\s+99%\s+(\S+)", "0ms")),
        "non2xx": int(grab(r"Non-2xx or 3xx responses: (\d+)")),
        "sockerr": sum(int(x) for x in sock.groups()) if sock else 0,
    }


def uncorrect(hist: dict[int, int], interval: int) -> dict[int, int]:
    """Undoes wrk 4.1's stats_correct(latency, interval): each recorded sample n >= 2*interval
    added one made-up sample at n - interval, n - 2*interval, ... down to just above interval.
    So, from the top, a bucket m > interval holds its own samples plus one per recorded sample
    above it in the same residue class modulo interval."""
    if interval <= 0:
        return dict(hist)
    real, above = {}, {}
    for v in sorted(hist, reverse=True):
        n = hist[v]
        if v > interval:
            n -= above.get(v % interval, 0)
            above[v % interval] = above.get(v % interval, 0) + n
        if n > 0:
            real[v] = n
    return real


def percentile(hist: dict[int, int], p: float) -> int:
    """wrk's definition: the first value whose cumulative count reaches round(p% * count + 0.5)."""
    rank, total = math.floor(p / 100 * sum(hist.values()) + 1), 0
    for v in sorted(hist):
        total += hist[v]
        if total >= rank:
            return v
    return 0


# --- HTTP --------------------------------------------------------------------------------------
def free_port() -> int:
    """For the reference only (uvicorn takes a port number; inferd binds port 0 and logs it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(port: int, tls: ssl.SSLContext | None, method: str, path: str, body: str | None = None,
            headers: dict | None = None, timeout: float = 5) -> tuple[int | None, bytes]:
    try:
        if tls:
            c = http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout, context=tls)
        else:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        data = r.read()
        c.close()
        return r.status, data
    except (OSError, http.client.HTTPException):
        return None, b""


@dataclass
class Server:
    name: str           # "inferd", "reference digits", ...
    side: str           # "inferd", "reference" or "reference-dynamic": the column it fills
    port: int
    tls: ssl.SSLContext | None
    key: str            # its X-API-Key
    proc: subprocess.Popen
    ready_s: float = 0.0
    inferd: harness.Server | None = None  # inferd's lifecycle goes through the harness

    def tree(self) -> list[int]:
        return proc_tree(self.proc.pid)

    def url(self, path: str) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}{path}"

    def route(self, workload: str) -> Route:
        inferd, reference, _ = WORKLOADS[workload]
        return inferd if self.side == "inferd" else reference


class Bench:
    def __init__(self, a: argparse.Namespace):
        self.a = a
        self.work = Path(a.work)
        self.servers: list[Server] = []
        self.cells: list[dict] = []
        self.phases: list[dict] = []
        self.ref_key = "ref_" + secrets.token_hex(16)
        self.provision()
        self.ca = ssl.create_default_context(cafile=str(self.inferd_state.ca_cert))

    # --- set-up ---------------------------------------------------------------------------------
    def provision(self) -> None:
        """A throwaway inferd state folder (`init`), a predict key for the load, a metrics key."""
        self.inferd_state = harness.provision(self.a.inferd, self.work)  # its admin key: unused
        self.state = self.inferd_state.dir
        self.inferd_key = self.inferd_state.add_api_key("bench", "predict")
        self.metrics_key = self.inferd_state.add_api_key("bench-metrics", "metrics")

    def log_file(self, name: str, tls: bool) -> Path:
        return self.work / f"{name.replace(' ', '-')}-{'tls' if tls else 'http'}.log"

    def record_group(self, proc: subprocess.Popen) -> None:
        """Lists a server's process group for bench.sh's trap, in case this driver dies."""
        with (self.work / "pgids").open("a") as f:
            f.write(f"{proc.pid}\n")

    def spawn_reference(self, name: str, side: str, cmd: list[str], env: dict, tls: bool, port: int,
                        ready_path: str) -> Server:
        """Starts a reference server in its own session and times spawn -> first 200 on ready_path."""
        logf = self.log_file(name, tls)
        t0 = time.perf_counter()
        with logf.open("ab") as out:
            proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.record_group(proc)
        s = Server(name, side, port, self.ca if tls else None, self.ref_key, proc)
        self.servers.append(s)
        deadline = t0 + self.a.ready_timeout
        while proc.poll() is None:
            if request(port, s.tls, "GET", ready_path, timeout=1)[0] == 200:
                s.ready_s = time.perf_counter() - t0
                log(f"{name} ({'TLS' if tls else 'HTTP'}) ready in {s.ready_s * 1000:.0f} ms on port {port}")
                return s
            if time.perf_counter() > deadline:
                break
            time.sleep(0.002)
        tail = "\n".join(logf.read_text(errors="replace").splitlines()[-10:])
        raise RuntimeError(f"{name} not ready within {self.a.ready_timeout} s (exit {proc.poll()}); "
                           f"its log ends:\n{tail}")

    def start_inferd(self, tls: bool) -> Server:
        """inferd through the harness, in its own session (listed for bench.sh's trap)."""
        h = harness.Server(self.inferd_state, self.log_file("inferd", tls), {
            "INFERD_TLS_ENABLED": "true" if tls else "false",
            # Huge quotas, not "off": the limiter still runs, as slowapi does on the reference.
            "INFERD_RATE_LIMIT_DEFAULT": "1000000/second",
            "INFERD_RATE_LIMIT_ANONYMOUS_PER_IP": "1000000/second",
            # The default queue: requests wait by time (queue_timeout_ms), not depth.
            "INFERD_LOG_ACCESS": "false",  # the reference runs with --no-access-log
        }, new_session=True)
        self.record_group(h.proc)
        s = Server("inferd", "inferd", 0, self.ca if tls else None, self.inferd_key, h.proc, inferd=h)
        self.servers.append(s)
        h.wait_ready(self.a.ready_timeout)
        s.port, s.ready_s = h.port, h.ready_s
        log(f"inferd ({'TLS' if tls else 'HTTP'}) ready in {s.ready_s * 1000:.0f} ms on port {s.port}")
        return s

    def start_reference(self, name: str, side: str, model_path: str, preprocess: str, tls: bool,
                        workers: int | None = None) -> Server:
        port = free_port()
        extra = "--no-access-log"
        if tls:
            extra += f" --ssl-keyfile {self.state / 'tls' / 'key.pem'} --ssl-certfile {self.state / 'tls' / 'cert.pem'}"
        env = dict(os.environ,
                   REFERENCE_VENV=self.a.venv, API_KEY=self.ref_key, SECRET_KEY=secrets.token_hex(32),
                   MODEL_PATH=model_path, PREPROCESS_MODULE=preprocess, PYTHONPATH=str(HERE),
                   RATE_LIMIT="1000000000/minute",  # the reference README's way to lift the limit
                   UVICORN_EXTRA=extra,
                   ORT_INTRA_OP_THREADS=str(self.a.ref_ort_threads), ORT_INTER_OP_THREADS="1")
        cmd = [str(Path(self.a.reference) / "load" / "start_server.sh"), str(workers or self.a.ref_workers), str(port)]
        return self.spawn_reference(name, side, cmd, env, tls, port, "/health")

    def stop_all(self) -> None:
        """SIGTERM to every server at once. A reference that ignores it for 20 s is killed with
        its process group; inferd must exit 0 within 20 s (the harness's check), else this raises
        once all are stopped."""
        for s in self.servers:
            if s.inferd:
                s.inferd.terminate()
            elif s.proc.poll() is None:
                s.proc.send_signal(signal.SIGTERM)
        failures = []
        for s in self.servers:
            if s.inferd:
                try:
                    s.inferd.wait_stopped(timeout=20)
                except harness.HarnessError as e:
                    failures.append(e)
                continue
            try:
                s.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                log(f"{s.name} ignored SIGTERM for 20 s; SIGKILL to its process group")
                os.killpg(s.proc.pid, signal.SIGKILL)
                s.proc.wait(timeout=5)
        self.servers = []
        (self.work / "pgids").write_text("")  # all stopped: nothing left for bench.sh's trap
        if failures:
            raise failures[0]

    def wait_quiet(self) -> dict:
        t0 = time.monotonic()
        r = subprocess.run([str(Path(self.a.reference) / "load" / "wait_quiet.sh"), str(self.a.quiet_max),
                            str(self.a.quiet_cores)], capture_output=True, text=True,
                           timeout=self.a.quiet_max + 30)
        last = (r.stdout.strip().splitlines() or ["(no sample)"])[-1]
        waited = time.monotonic() - t0
        log(f"wait_quiet: {'quiet' if r.returncode == 0 else 'NOT quiet'} after {waited:.0f} s ({last})")
        return {"quiet": r.returncode == 0, "waited_s": round(waited), "last": last,
                "loadavg": Path("/proc/loadavg").read_text().split()[:3]}

    # --- checks and measurements -------------------------------------------------------------
    def check_answer(self, s: Server, workload: str) -> dict:
        """One real request before timing: a wrong body must not be timed as a fast 4xx."""
        route = s.route(workload)
        status, data = request(s.port, s.tls, "POST", route.path, route.body,
                               {"Content-Type": "application/json", "X-API-Key": s.key})
        if status != 200:
            raise RuntimeError(f"{s.name} {route.path}: HTTP {status} {data[:200]!r}")
        d = json.loads(data)
        if workload == "tensor":
            probs = d["outputs"][0]["data"] if s.side == "inferd" else d["outputs"]["probabilities"][0]
            return {"label": str(probs.index(max(probs))), "p": max(probs)}
        d = d if s.side == "inferd" else d["prediction"]
        return {"label": d.get("prediction", d.get("label")), "p": d["scores"]["positive"]}

    def inference_time(self, s: Server, model: str) -> tuple[float, int]:
        """(sum of seconds, count) of inferd_inference_duration_seconds for a model, from /metrics."""
        status, data = request(s.port, s.tls, "GET", "/metrics", headers={"X-API-Key": self.metrics_key})
        if status != 200:
            raise RuntimeError(f"inferd /metrics: HTTP {status}")
        total, count = 0.0, 0
        for m in re.finditer(r'^inferd_inference_duration_seconds_(sum|count)\{([^}]*)\} (\S+)$',
                             data.decode(), re.M):
            if f'model="{model}"' in m.group(2):
                if m.group(1) == "sum":
                    total += float(m.group(3))
                else:
                    count += int(float(m.group(3)))
        return total, count

    def run_cell(self, s: Server, workload: str, transport: str, c: int) -> dict:
        route, model, threads = s.route(workload), WORKLOADS[workload][2], min(c, CORES)
        cmd = ["timeout", "-k", "5", str(self.a.seconds + 30), "wrk", "--latency", f"-t{threads}", f"-c{c}",
               f"-d{self.a.seconds}s", "--timeout", "10s", "-s", str(LUA), s.url(route.path)]
        env = dict(os.environ, API_KEY=s.key, BENCH_BODY=route.body)
        pids = s.tree()
        inference0 = self.inference_time(s, model) if s.side == "inferd" else None
        sampler = RssSampler(pids)
        sampler.start()
        ru0, (busy0, all0), cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN), machine_busy(), cpu_seconds(pids)
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=self.a.seconds + 60)
        cpu1, (busy1, all1), ru1 = cpu_seconds(pids), machine_busy(), resource.getrusage(resource.RUSAGE_CHILDREN)
        peak = sampler.stop()
        if r.returncode != 0:
            raise RuntimeError(f"wrk exited {r.returncode}: {r.stderr.strip()}")
        w = parse_wrk(r.stdout, c)
        server_cpu = cpu1 - cpu0
        wrk_cpu = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
        busy_cores = (busy1 - busy0) / max(all1 - all0, 1) * CORES
        cell = dict(side=s.side, server=s.name, workload=workload, transport=transport, c=c, threads=threads, **w,
                    errors=w["non2xx"] + w["sockerr"],
                    server_cpu_s=round(server_cpu, 3), cpu_us_per_req=server_cpu / max(w["requests"], 1) * 1e6,
                    wrk_cpu_s=round(wrk_cpu, 3),
                    other_cores=max(0.0, busy_cores - (server_cpu + wrk_cpu) / max(w["duration_s"], 0.001)),
                    peak_rss_kib=peak, inference_ms=None)
        if inference0 is not None:
            total, count = self.inference_time(s, model)
            if count > inference0[1]:
                cell["inference_ms"] = (total - inference0[0]) / (count - inference0[1]) * 1000
        if w["samples"] != w["requests"]:
            log(f"note: {w['samples']} latency samples for {w['requests']} requests")
        log(f"{transport:4} {workload:6} c={c:<3} {s.side:17} {cell['rps']:8.0f} req/s  p50 {cell['p50_ms']:8.3f} ms  "
            f"p99 {cell['p99_ms']:8.3f} ms  cpu {cell['cpu_us_per_req']:6.0f} us/req  peak {peak / 1024:4.0f} MiB  "
            f"errors {cell['errors']}{'  <-- FLAG' if cell['errors'] else ''}")
        return cell

    # --- the run --------------------------------------------------------------------------------
    def start_references(self, tls: bool, workers: int | None = None) -> tuple[Server, Server]:
        models = REPO / "models"
        return (self.start_reference("reference digits", "reference", str(models / "digits" / "model.onnx"),
                                     "preprocess_default", tls, workers),
                self.start_reference("reference sentiment", "reference", str(models / "sentiment" / "model.onnx"),
                                     "preprocess_sentiment", tls, workers))

    def idle(self, phase: dict, sides: dict[str, list[Server]], servers: list[Server]) -> None:
        """One checked answer from each server, then its idle RSS."""
        phase["answers"] = {w: {s.side: self.check_answer(s, w) for s in ss} for w, ss in sides.items()}
        time.sleep(1)
        phase["servers"] = {s.name: dict(side=s.side, ready_s=s.ready_s, processes=len(s.tree()),
                                         idle_rss_kib=rss_kib(s.tree())) for s in servers}

    def end_phase(self, phase: dict) -> None:
        for s in self.servers:
            phase["servers"][s.name]["hwm_kib"] = rss_kib(s.tree(), "VmHWM")
        phase["loadavg_end"] = Path("/proc/loadavg").read_text().split()[:3]
        self.stop_all()
        self.phases.append(phase)

    def run(self) -> None:
        if self.a.ref_workers != 1:
            # The smallest reference that serves both models, one worker each: memory and
            # start-up only (the load runs use --ref-workers).
            phase = {"transport": "http", "label": "1 worker per model, no load", "quiet": self.wait_quiet()}
            digits, sentiment = self.start_references(False, workers=1)
            self.idle(phase, {"tensor": [digits], "text": [sentiment]}, [digits, sentiment])
            self.end_phase(phase)
        for transport in self.a.transports:
            tls = transport == "tls"
            phase = {"transport": transport, "label": f"{self.a.ref_workers} workers per model",
                     "quiet": self.wait_quiet()}
            inferd = self.start_inferd(tls)
            digits, sentiment = self.start_references(tls)
            sides = {"tensor": [inferd, digits], "text": [inferd, sentiment]}  # workload -> servers
            if self.a.ref_text_model:
                sides["text"].append(self.start_reference("reference sentiment-dynamic", "reference-dynamic",
                                                          self.a.ref_text_model, "preprocess_sentiment", tls))
            self.idle(phase, sides, list(self.servers))
            turn = 0
            for n in TEXT_LENGTHS:
                sides[f"text{n}"] = sides["text"]
            for workload, ss in sides.items():
                for c in (self.a.concurrency if workload in ("tensor", "text") else [1]):
                    for s in ss[turn % len(ss):] + ss[:turn % len(ss)]:  # rotate who goes first
                        self.cells.append(self.run_cell(s, workload, transport, c))
                        time.sleep(1)
                    turn += 1
            self.end_phase(phase)


# --- report -------------------------------------------------------------------------------------
def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def fmt_ratio(r: float | None) -> str:
    if r is None:
        return "n/a"
    return f"{r:.2f}x" if r >= 0.1 else f"1/{1 / r:.0f}" if r > 0 else "0"


def report(b: Bench, meta: dict) -> tuple[str, bool]:
    a, L = b.a, []
    cell = {(x["side"], x["workload"], x["transport"], x["c"]): x for x in b.cells}
    refs = sorted({x["side"] for x in b.cells if x["side"] != "inferd"})
    L.append(f"## Run {meta['date']} ({'quick' if a.quick else 'full'})\n")
    for k in ("commit", "binary", "machine", "command", "config"):
        L.append(f"- {k}: {meta[k]}")
    L.append(f"- text: \"{SENTENCE}\" ({meta['tokens']} tokens with [CLS] and [SEP]); tensor: one 8x8 digit, "
             f"FP32 [1, 64] (label 0)")
    if a.ref_text_model:
        L.append(f"- reference-dynamic: the reference serving {a.ref_text_model} (the same encoder with "
                 f"onnxruntime's dynamic int8 quantisation) for the text workload")
    for p in b.phases:
        q = p["quiet"]
        quiet = "quiet" if q["quiet"] else "**not quiet**"
        L.append(f"- {p['transport']} ({p['label']}): wait_quiet {quiet} after {q['waited_s']} s "
                 f"({q['last']}); load average {' '.join(q['loadavg'])} before, {' '.join(p['loadavg_end'])} after")

    L.append("\n### Load (wrk, keep-alive, same body and X-API-Key auth on both sides)\n")
    L.append("| workload | transport | c | server | req/s | p50 ms | p99 ms | mean ms | errors | server CPU µs/req "
             "| inferd inference ms | peak RSS MiB | other load (cores) | wrk's p99 ms |")
    L.append("|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for x in b.cells:
        inf = "" if x["inference_ms"] is None else f"{x['inference_ms']:.3f}"
        errors = f"{x['errors']}{' **FLAG**' if x['errors'] else ''}"
        L.append(f"| {x['workload']} | {x['transport']} | {x['c']} | {x['side']} | {x['rps']:.0f} | "
                 f"{x['p50_ms']:.3f} | {x['p99_ms']:.3f} | {x['mean_ms']:.3f} | {errors} | "
                 f"{x['cpu_us_per_req']:.0f} | {inf} | {x['peak_rss_kib'] / 1024:.0f} | {x['other_cores']:.2f} | "
                 f"{x['wrk_p99_ms']:.3f} |")

    L.append("\n### Start-up and memory\n")
    L.append("| transport | reference deployment | server | processes | time to ready ms | RSS idle MiB "
             "| RSS high-water at the end MiB |")
    L.append("|---|---|---|---:|---:|---:|---:|")
    for p in b.phases:
        for name, s in p["servers"].items():
            L.append(f"| {p['transport']} | {p['label']} | {name} | {s['processes']} | {s['ready_s'] * 1000:.0f} | "
                     f"{s['idle_rss_kib'] / 1024:.0f} | {s['hwm_kib'] / 1024:.0f} |")

    L.append("\n### Ratios inferd / reference\n")
    L.append("| workload | transport | c | against | req/s | p50 | p99 | CPU/req |")
    L.append("|---|---|---:|---|---:|---:|---:|---:|")
    for x in b.cells:
        for ref in refs:
            r = cell.get((ref, x["workload"], x["transport"], x["c"])) if x["side"] == "inferd" else None
            if r:
                q = [fmt_ratio(ratio(x[k], r[k])) for k in ("rps", "p50_ms", "p99_ms", "cpu_us_per_req")]
                L.append(f"| {x['workload']} | {x['transport']} | {x['c']} | {ref} | {' | '.join(q)} |")

    targets = []  # (target, cell, inferd, reference, ratio, met)
    for t in a.transports:
        for c in a.concurrency:
            i, r = cell[("inferd", "tensor", t, c)], cell[("reference", "tensor", t, c)]
            for name, key, unit, fmt, ok in (
                    ("tensor req/s >= 10x", "rps", "", "{:.0f}", lambda q: q >= 10),
                    ("tensor p99 <= 1/10", "p99_ms", " ms", "{:.3f}", lambda q: q <= 0.1),
                    ("tensor CPU/req <= 1/10", "cpu_us_per_req", " µs", "{:.0f}", lambda q: q <= 0.1)):
                q = ratio(i[key], r[key])
                targets.append((name, f"{t} c={c}", fmt.format(i[key]) + unit, fmt.format(r[key]) + unit,
                                fmt_ratio(q), q is not None and ok(q)))
    c_cores = min(a.concurrency, key=lambda n: abs(n - CORES))
    for ref in refs:
        for t in a.transports:
            i, r = cell[("inferd", "text", t, c_cores)], cell.get((ref, "text", t, c_cores))
            if r:
                q = ratio(i["rps"], r["rps"])
                targets.append((f"text req/s >= 1.0x at c=cores, against {ref}", f"{t} c={c_cores}",
                                f"{i['rps']:.0f}", f"{r['rps']:.0f}", fmt_ratio(q), q is not None and q >= 1.0))
    for ref in refs:
        for t in a.transports:
            i, r = cell.get(("inferd", "text16", t, 1)), cell.get((ref, "text16", t, 1))
            if i and r:
                q = ratio(i["p50_ms"], r["p50_ms"])
                targets.append((f"text c=1 p50 at 16 tokens <= {ref}'s", f"{t} c=1",
                                f"{i['p50_ms']:.3f} ms", f"{r['p50_ms']:.3f} ms", fmt_ratio(q),
                                q is not None and q <= 1.0))
    inferd_idle = {p["transport"]: p["servers"]["inferd"]["idle_rss_kib"] for p in b.phases if "inferd" in p["servers"]}
    for p in b.phases:
        s = p["servers"]
        ref = s["reference digits"]["idle_rss_kib"] + s["reference sentiment"]["idle_rss_kib"]
        mine = inferd_idle.get(p["transport"], next(iter(inferd_idle.values()), None))
        q = ratio(mine, ref)
        targets.append(("idle RSS <= 1/5 (both models)", f"{p['transport']}, reference {p['label']}",
                        f"{(mine or 0) / 1024:.0f} MiB", f"{ref / 1024:.0f} MiB", fmt_ratio(q),
                        q is not None and q <= 0.2))
    for t in a.transports:
        for w in WORKLOADS:
            x = cell.get(("inferd", w, t, 1))
            if x and x["inference_ms"]:
                inf = x["inference_ms"]
                over, over50 = x["mean_ms"] - inf, x["p50_ms"] - inf
                targets.append(("server overhead at c=1 <= 10% of inference", f"{w} {t} c=1",
                                f"mean {x['mean_ms']:.3f} ms (p50 {x['p50_ms']:.3f}) - inference {inf:.3f} ms "
                                f"= {over:.3f} ms", "", f"{over / inf:.0%} (p50: {over50 / inf:.0%})",
                                over / inf <= 0.1))
    L.append("\n### Targets (issues 7 and 14)\n")
    L.append("| target | cell | inferd | reference | ratio | |")
    L.append("|---|---|---|---|---:|---|")
    for name, where, iv, rv, rt, ok in targets:
        L.append(f"| {name} | {where} | {iv} | {rv} | {rt} | {'met' if ok else '**MISSED**'} |")
    errors = [x for x in b.cells if x["errors"]]
    if errors:
        L.append("\n**FLAG**: cells with non-2xx answers or socket errors: " + ", ".join(
            f"{x['side']} {x['workload']} {x['transport']} c={x['c']} ({x['non2xx']} non-2xx, {x['sockerr']} socket)"
            for x in errors))
    L.append("\nAnswers checked before timing (label, probability): " + "; ".join(
        f"{p['transport']} {w}: " + ", ".join(f"{side} {v['label']} ({v['p']:.4f})" for side, v in sides.items())
        for p in b.phases for w, sides in p["answers"].items()))
    return "\n".join(L) + "\n", not errors


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--inferd", required=True)
    ap.add_argument("--venv", required=True)
    ap.add_argument("--reference", required=True)
    ap.add_argument("--work", required=True, help="scratch folder (state, logs)")
    ap.add_argument("--results", required=True, help="folder for the .md and .json results")
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--concurrency", default=f"1,{CORES},{4 * CORES},64")
    ap.add_argument("--transports", default="http,tls")
    ap.add_argument("--ref-workers", type=int, default=CORES)
    ap.add_argument("--ref-ort-threads", type=int, default=1)
    ap.add_argument("--ref-text-model", default="", help="a second sentiment model.onnx for the reference")
    ap.add_argument("--quiet-max", type=int, default=60)
    ap.add_argument("--quiet-cores", type=float, default=0.2)
    ap.add_argument("--ready-timeout", type=float, default=120)
    ap.add_argument("--command", default="scripts/bench.sh")
    a = ap.parse_args()
    a.concurrency = sorted({int(x) for x in a.concurrency.split(",")})
    a.transports = a.transports.split(",")

    def sh(*cmd: str) -> str:
        return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO).stdout.strip()

    cpu = re.search(r"^Model name:\s+(.*)$", sh("lscpu"), re.M)
    mem_gib = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1)) / 1048576
    dirty = [line[3:] for line in subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                                  capture_output=True, text=True, cwd=REPO).stdout.splitlines()]
    built = datetime.fromtimestamp(os.path.getmtime(a.inferd), timezone.utc)
    meta = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": sh("git", "rev-parse", "HEAD") + (
            f" (uncommitted changes in: {', '.join(dirty)})" if dirty else ""),
        "binary": f"{a.inferd} ({os.path.getsize(a.inferd) / 1048576:.1f} MiB, built {built:%Y-%m-%d %H:%M UTC})",
        "machine": f"{cpu.group(1) if cpu else '?'}, {CORES} cores, {mem_gib:.0f} GiB, Linux {os.uname().release}",
        "command": a.command,
        "config": (f"{a.seconds} s per cell, wrk 4.1 -t min(c, {CORES}) --timeout 10s; inferd: rate limits on with "
                   f"quotas of 1000000/second, the default inference queue, access log off, one inference "
                   f"worker per core; reference: uvicorn --workers {a.ref_workers} per model, onnxruntime "
                   f"intra_op_threads {a.ref_ort_threads}, RATE_LIMIT 1000000000/minute, --no-access-log"
                   + "".join(f"; {k}={v} (inferd: tract's knob)" for k, v in sorted(os.environ.items())
                             if k.startswith("TRACT_"))),
        "tokens": subprocess.run([f"{a.venv}/bin/python", "-c",
                                  "import sys, preprocess_sentiment as p; "
                                  "print(p.preprocess(sys.argv[1], None)['input_ids'].shape[1])", SENTENCE],
                                 capture_output=True, text=True, cwd=HERE).stdout.strip() or "?",
    }
    for n in TEXT_LENGTHS:
        body = json.loads(WORKLOADS[f"text{n}"][0].body)["text"]
        got = subprocess.run([f"{a.venv}/bin/python", "-c",
                              "import sys, preprocess_sentiment as p; "
                              "print(p.preprocess(sys.argv[1], None)['input_ids'].shape[1])", body],
                             capture_output=True, text=True, cwd=HERE).stdout.strip()
        if got and int(got) != n:
            sys.exit(f"bench: the {n}-token text has {got} tokens")
    b = Bench(a)

    def on_signal(signum, _frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        b.run()
    finally:
        b.stop_all()
    text, clean = report(b, meta)
    print(text)
    out = Path(a.results)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / (datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + ("-quick" if a.quick else ""))
    stem.with_suffix(".md").write_text(text)
    stem.with_suffix(".json").write_text(json.dumps({"meta": meta, "phases": b.phases, "cells": b.cells}, indent=1))
    log(f"results: {stem}.md and .json")
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
