#!/usr/bin/env python3
"""Model lifecycle, end to end, driven by tritonclient (issue 16's proof).

A model that no one here wrote: a scikit-learn pipeline (StandardScaler + LogisticRegression)
trained on the breast-cancer data set that ships inside scikit-learn (no download), with fixed
seeds, converted by skl2onnx (`zipmap=False`, the scaler as `Sub`/`Div`, so that tract-onnx
runs it: standard ops plus ai.onnx.ml's LinearClassifier). Outputs: `label` INT64 [n] and
`probabilities` FP32 [n, 2]. Version 2 is the same pipeline trained on another split.

On a throw-away work folder (given by scripts/model_lifecycle.sh), through scripts/lib's
harness: `inferd model inspect` (text and --json), `model add` (v1; the plain skl2onnx
graph, whose Scaler tract lacks, and a truncated file refused, leaving nothing), `inferd
serve` with it and the bundled digits model, then with tritonclient.http over TLS and the
admin API key: binary-tensor inference equal to
onnxruntime's on the same inputs (probabilities within 1e-3, labels equal), the repository
index, config, admin scope, `model add` v2 + load (v2 answers, v1 goes per the version
policy), a broken v3 refused by load (v2 keeps answering, the index says why), unload and
load, statistics counted against the requests sent, the version policy "all" taken by a
SIGHUP reload (v1 and v2 both answer); then a second server with
`require_signed = true`: a signed version loads, a tampered one (one byte of a weight changed
after signing, still a valid model) and an unsigned one are refused while the old one keeps
answering.

Every check is a function listed in CHECKS and runs in that order; the state they build up
(the server, the versions on disk) is shared, so a check marked fatal stops the run when it
fails and the rest are reported as skipped. Prints "ok <name>" / "FAIL <name>: <why>" /
"skip <name>", then "N passed, M failed, K skipped"; exits 1 if any check failed or was
skipped, 2 on a usage error. Every server and client call has its own deadline; the caller
bounds the whole run (model_lifecycle.sh runs it under `timeout`, which signals the process
group: the servers too).

usage: model_lifecycle.py --bin PATH/TO/inferd --work DIR
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import struct
import subprocess
import sys
import time
import tomllib
import traceback
from pathlib import Path

import gevent.ssl
import numpy as np
import onnx
import onnxruntime as ort
import tritonclient.http as httpclient
from skl2onnx import to_onnx
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from tritonclient.utils import InferenceServerException

sys.path.insert(0, str(Path(__file__).resolve().parent / "lib"))
import inferd_harness as harness  # noqa: E402 (scripts/lib is not a package)

NAME = "cancer"            # the served model's name
FEATURES = 30              # load_breast_cancer's columns
CLASSES = 2
TOLERANCE = 1e-3           # largest |tract - onnxruntime| allowed per probability
SPLIT_SEEDS = {1: 1, 2: 2}  # version -> train_test_split random_state
STATS_REQUESTS = 5         # requests sent for the statistics check ...
STATS_BATCH = 3            # ... each carrying this many items
SIGN_RE = re.compile(r"sign|manifest|digest|sha-?256|tamper|hash|trust", re.I)


class CheckFailed(Exception):
    pass


def expect(cond, msg):
    if not cond:
        raise CheckFailed(msg)


# --- the model no one here wrote ---------------------------------------------------------------


def train(seed: int):
    """StandardScaler + LogisticRegression on 75% of load_breast_cancer (split by `seed`);
    the pipeline and the held-out rows (features as float32, labels)."""
    x, y = load_breast_cancer(return_X_y=True)
    x = x.astype(np.float32)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25,
                                                        random_state=seed, stratify=y)
    pipe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000, random_state=0))
    pipe.fit(x_train, y_train)
    return pipe, x_test, y_test


def convert(pipe, path: Path, scaler_as_div: bool = True) -> None:
    """skl2onnx with the options that keep the graph inside what tract runs: no ZipMap (a
    sequence of maps), the scaler as Sub/Div instead of ai.onnx.ml's Scaler (which tract
    lacks: `scaler_as_div=False` makes that graph, for the refusal checks)."""
    options = {LogisticRegression: {"zipmap": False}}
    if scaler_as_div:
        options[StandardScaler] = {"div": "div_cast"}
    model = to_onnx(pipe, np.zeros((1, FEATURES), dtype=np.float32), options=options,
                    target_opset={"": 17, "ai.onnx.ml": 3})
    model.doc_string = ("scikit-learn StandardScaler + LogisticRegression on load_breast_cancer, "
                        "converted by skl2onnx (scripts/model_lifecycle.py)")
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


class Reference:
    """onnxruntime's answers for one ONNX file."""

    def __init__(self, path: Path):
        self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        self.outputs = [o.name for o in self.session.get_outputs()]

    def run(self, x: np.ndarray):
        """(labels int64 [n], probabilities float32 [n, 2])."""
        got = dict(zip(self.outputs, self.session.run(None, {self.input: x})))
        return np.asarray(got["label"], dtype=np.int64), np.asarray(got["probabilities"])


# --- what the checks share ---------------------------------------------------------------------


class Run:
    """The state the checks build up, in order: files, the provisioned state, the server and a
    tritonclient for it."""

    def __init__(self, binary: str, work: Path):
        self.bin = str(Path(binary).resolve())
        self.work = work
        self.src = work / "src"          # the made ONNX files
        self.models = work / "models"    # the repository the first server serves
        self.signed = work / "signed"    # the repository of the require_signed server
        self.keys = work / "keys"        # keygen's output (private and public)
        self.trusted = work / "trusted"  # the public key only: trusted_keys_dir
        self.onnx: dict[int, Path] = {}
        self.ref: dict[int, Reference] = {}
        self.x: np.ndarray | None = None  # held-out rows, the inputs every comparison uses
        self.state: harness.State | None = None
        self.server: harness.Server | None = None
        self.client: httpclient.InferenceServerClient | None = None
        self.predict_key = ""
        self.tamper: tuple[Path, int, bytes] | None = None  # file, offset, original byte

    # commands

    def inferd(self, *args: str):
        return harness.attempt([self.bin, *args])

    def inferd_ok(self, *args: str) -> str:
        r = self.inferd(*args)
        expect(r.returncode == 0, f"inferd {' '.join(args[:2])} exited {r.returncode}: "
               f"{one_line(r.stderr or r.stdout)}")
        return r.stdout

    # server

    def start(self, log: str, overrides: dict[str, str] | None = None) -> str:
        # A request costs one quota unit per batch item and the checks send batches of 64:
        # `init`'s 600/minute would answer 429 halfway (rate limits are not under test here).
        env = {"INFERD_RATE_LIMIT_DEFAULT": "100000/minute", **(overrides or {})}
        self.server = harness.start(self.state, self.work / log, env)
        ca = str(self.state.ca_cert)

        # geventhttpclient calls the factory with its own cafile; trust only our CA, with the
        # host name checked (the certificate names 127.0.0.1).
        def ssl_context_factory(*_args, **_kwargs):
            return gevent.ssl.create_default_context(cafile=ca)

        self.client = httpclient.InferenceServerClient(
            url=self.server.addr, ssl=True, ssl_context_factory=ssl_context_factory,
            insecure=False, connection_timeout=30.0, network_timeout=60.0)
        return f"{self.server.url}, ready in {self.server.ready_s * 1000:.0f} ms"

    def stop(self) -> None:
        server, self.server = self.server, None
        if self.client is not None:
            self.client.close()
            self.client = None
        server.stop()

    def hdr(self, key: str | None = None) -> dict[str, str]:
        # A fresh dict per call: infer() writes the binary-extension headers into it.
        return {"X-API-Key": self.state.api_key if key is None else key}

    # inference

    def infer(self, x: np.ndarray, version: str = "", model: str = NAME, key: str | None = None):
        """Binary tensors both ways; (labels, probabilities, the response's JSON header)."""
        inp = httpclient.InferInput("X", list(x.shape), "FP32")
        inp.set_data_from_numpy(x, binary_data=True)
        outs = [httpclient.InferRequestedOutput(n, binary_data=True)
                for n in ("label", "probabilities")]
        r = self.client.infer(model, [inp], model_version=version, outputs=outs,
                              headers=self.hdr(key))
        header = r.get_response()
        for o in header.get("outputs", []):
            expect("binary_data_size" in o.get("parameters", {}),
                   f"output {o.get('name')} not sent as binary: {o}")
        return r.as_numpy("label"), r.as_numpy("probabilities"), header

    def expect_answers_as(self, version: int, route: str = "", rows: int = 64) -> str:
        """The model answers like onnxruntime on `version`'s file, and says it is that version."""
        x = self.x[:rows]
        labels, probs, header = self.infer(x, route)
        want_labels, want_probs = self.ref[version].run(x)
        expect(header.get("model_name") == NAME, f"model_name {header.get('model_name')!r}")
        expect(str(header.get("model_version")) == str(version),
               f"answered as version {header.get('model_version')!r}, want {version}")
        expect(labels.dtype == np.int64 and labels.shape == (len(x),),
               f"label {labels.dtype} {labels.shape}, want int64 ({len(x)},)")
        expect(probs.dtype == np.float32 and probs.shape == (len(x), CLASSES),
               f"probabilities {probs.dtype} {probs.shape}, want float32 ({len(x)}, {CLASSES})")
        diff = float(np.abs(probs - want_probs).max())
        expect(diff <= TOLERANCE, f"v{version}: max |tract - onnxruntime| = {diff:.2e} "
               f"> {TOLERANCE}")
        wrong = int((labels != want_labels).sum())
        expect(wrong == 0, f"v{version}: {wrong} of {len(x)} labels differ from onnxruntime's")
        return f"v{version}, {len(x)} rows, max diff {diff:.1e}"

    def expect_refused(self, fn, what: str, statuses=None) -> str:
        """fn() raises InferenceServerException with a status in `statuses` (any 4xx/5xx
        by default) and a KServe error body; its 'status: message'."""
        try:
            fn()
        except InferenceServerException as e:
            status = str(e.status())
            ok = status in statuses if statuses else re.fullmatch(r"[45]\d\d", status or "")
            expect(ok, f"{what}: status {status!r} ({e.message()!r}), want "
                   f"{'/'.join(statuses) if statuses else '4xx or 5xx'}")
            expect(e.message() and not e.message().startswith("an exception occurred"),
                   f"{what}: error body not a KServe error object: {e.message()!r}")
            return f"{status} {e.message()}"
        raise CheckFailed(f"{what}: accepted (want refused)")

    def index(self) -> dict[tuple[str, str], dict]:
        """The repository index by (name, version); every entry checked for Triton's shape."""
        entries = self.client.get_model_repository_index(headers=self.hdr())
        expect(isinstance(entries, list), f"index is not a JSON array: {entries!r}")
        by_key = {}
        for e in entries:
            expect(isinstance(e, dict) and isinstance(e.get("name"), str),
                   f"index entry without a name: {e!r}")
            expect(e.get("state") in ("READY", "UNAVAILABLE", "LOADING", "UNLOADING"),
                   f"index entry with state {e.get('state')!r}: {e!r}")
            by_key[(e["name"], str(e.get("version", "")))] = e
        return by_key

    def stats(self, version: str = "") -> dict:
        """The one model_stats entry of NAME (at `version`, or the serving one)."""
        body = self.client.get_inference_statistics(NAME, version, headers=self.hdr())
        entries = body.get("model_stats") if isinstance(body, dict) else None
        expect(isinstance(entries, list), f"no model_stats list: {body!r}")
        if version:
            entries = [e for e in entries if str(e.get("version")) == version]
        expect(len(entries) == 1, f"want one model_stats entry for {NAME} {version}: {body!r}")
        e = entries[0]
        expect(e.get("name") == NAME, f"model_stats name {e.get('name')!r}")
        for k in ("inference_count", "execution_count", "last_inference"):
            expect(isinstance(e.get(k), int), f"model_stats.{k} = {e.get(k)!r}, want an integer")
        for k in ("success", "fail", "queue", "compute_input", "compute_infer", "compute_output"):
            d = e.get("inference_stats", {}).get(k)
            expect(isinstance(d, dict) and isinstance(d.get("count"), int)
                   and isinstance(d.get("ns"), int),
                   f"inference_stats.{k} = {d!r}, want {{count, ns}} integers")
        return e

    def add(self, version: int, models: Path, *extra: str) -> Path:
        """`inferd model add` of version `version`'s file; its folder, checked."""
        out = self.inferd_ok("model", "add", str(self.onnx[version]), "--name", NAME,
                             "--models", str(models), *extra)
        folder = models / NAME / str(version)
        expect((folder / "model.onnx").is_file() and (folder / "model.toml").is_file(),
               f"model add did not write {folder}/model.onnx and model.toml "
               f"(it printed {out.strip()[-300:]!r})")
        expect((folder / "model.onnx").read_bytes() == self.onnx[version].read_bytes(),
               f"{folder}/model.onnx is not a copy of {self.onnx[version]}")
        return folder

    def load(self) -> None:
        self.client.load_model(NAME, headers=self.hdr())


def one_line(text: str, limit: int = 400) -> str:
    """A command's output as one line, for a check's message."""
    return " | ".join(line.strip() for line in text.strip().splitlines() if line.strip())[:limit]


def ready_versions(index: dict, name: str = NAME) -> list[str]:
    return sorted(v for (n, v), e in index.items() if n == name and e["state"] == "READY")


# --- checks: files and commands -----------------------------------------------------------------


def make_models(r: Run):
    r.src.mkdir()
    r.models.mkdir()
    r.signed.mkdir()
    accuracy = {}
    for version, seed in SPLIT_SEEDS.items():
        pipe, x_test, y_test = train(seed)
        path = r.src / f"{NAME}-v{version}.onnx"
        convert(pipe, path)
        r.onnx[version], r.ref[version] = path, Reference(path)
        accuracy[version] = pipe.score(x_test, y_test)
        if version == 1:
            r.x = np.ascontiguousarray(x_test[:64])
            convert(pipe, r.src / "with-scaler.onnx", scaler_as_div=False)
    labels, probs = r.ref[1].run(r.x)
    expect(probs.shape == (64, CLASSES) and labels.shape == (64,),
           f"onnxruntime's outputs {labels.shape} {probs.shape}")
    # The versions must be told apart by their answers, or "v2 answers" would prove nothing.
    gap = float(np.abs(r.ref[2].run(r.x)[1] - probs).max())
    expect(gap > 10 * TOLERANCE, f"v1 and v2 answer alike (max diff {gap:.1e})")
    ops = sorted({n.op_type for n in onnx.load(str(r.onnx[1])).graph.node})
    return (f"ops {ops}; held-out accuracy v1 {accuracy[1]:.3f} v2 {accuracy[2]:.3f}; "
            f"v1 vs v2 max diff {gap:.2f}")


def inspect_text(r: Run):
    out = r.inferd_ok("model", "inspect", str(r.onnx[1]))
    for word in ("X", "label", "probabilities", "FP32", "INT64"):
        expect(re.search(rf"\b{word}\b", out), f"`model inspect` does not name {word}:\n{out}")
    return out.strip().splitlines()[0] if out.strip() else ""


def inspect_json(r: Run):
    out = r.inferd_ok("model", "inspect", str(r.onnx[1]), "--json")
    try:
        d = json.loads(out)
    except json.JSONDecodeError as e:
        raise CheckFailed(f"`model inspect --json` is not JSON ({e}): {out[:300]!r}") from None
    expect(isinstance(d, dict), f"not a JSON object: {d!r}")
    ins = {t.get("name"): t for t in d.get("inputs", [])}
    outs = {t.get("name"): t for t in d.get("outputs", [])}
    expect(list(ins) == ["X"], f"inputs {d.get('inputs')!r}, want X only")
    expect(ins["X"].get("datatype") == "FP32" and list(ins["X"].get("shape", []))[1:] == [FEATURES],
           f"input X {ins['X']!r}, want FP32 [-1, {FEATURES}]")
    expect(list(outs) == ["label", "probabilities"],
           f"outputs {d.get('outputs')!r}, want label, probabilities")
    expect(outs["label"].get("datatype") == "INT64", f"label {outs['label']!r}, want INT64")
    expect(outs["probabilities"].get("datatype") == "FP32",
           f"probabilities {outs['probabilities']!r}, want FP32")
    expect(all(t.get("served") is True for t in d["inputs"] + d["outputs"]),
           f"a tensor inferd would not serve: {d['inputs'] + d['outputs']!r}")
    tract = d.get("tract", {})
    expect(tract.get("parses") is True and tract.get("optimises") is True
           and not tract.get("unsupported"), f"tract's verdict: {tract!r}, want it runs")
    sha = hashlib.sha256(r.onnx[1].read_bytes()).hexdigest()
    expect(d.get("sha256") == sha, f"sha256 {d.get('sha256')!r}, want {sha}")
    return f"opsets {d.get('opsets')}, tract {tract}"


def unsupported_op_named(r: Run):
    path = str(r.src / "with-scaler.onnx")
    res = r.inferd("model", "inspect", path, "--json")
    expect(res.returncode == 1, f"inspect of a graph with ai.onnx.ml Scaler exited "
           f"{res.returncode}, want 1 (tract cannot run it): {one_line(res.stderr)}")
    try:
        tract = json.loads(res.stdout).get("tract", {})
    except json.JSONDecodeError:
        raise CheckFailed(f"inspect --json printed no JSON report: {res.stdout[:300]!r}") from None
    ops = [u.get("op") for u in tract.get("unsupported", [])]
    expect(ops == ["Scaler"] and tract.get("optimises") is False,
           f"tract's verdict {tract!r}, want Scaler named as unsupported")
    res = r.inferd("model", "add", path, "--name", "scaled", "--models", str(r.models))
    expect(res.returncode == 1, f"model add of it exited {res.returncode}, want 1: "
           f"{one_line(res.stderr or res.stdout)}")
    expect(not (r.models / "scaled").exists(), "model add refused it but left models/scaled")
    return one_line(res.stderr, 200)


def add_refuses_broken_file(r: Run):
    broken = r.src / "truncated.onnx"
    data = r.onnx[1].read_bytes()
    broken.write_bytes(data[: len(data) // 2])
    res = r.inferd("model", "add", str(broken), "--name", "broken", "--models", str(r.models))
    # 1: inferd's own refusal (2 is a usage error: a command line it does not know).
    expect(res.returncode == 1, f"model add of a truncated file exited {res.returncode}, "
           f"want 1: {one_line(res.stderr or res.stdout)}")
    left = r.models / "broken"
    expect(not left.exists(), f"model add refused but left {sorted(map(str, left.rglob('*')))}")
    return one_line(res.stderr, 200)


def add_v1(r: Run):
    shutil.copytree(harness.REPO / "models" / "digits", r.models / "digits")
    folder = r.add(1, r.models)
    manifest = tomllib.loads((folder / "model.toml").read_text())
    expect(manifest.get("name") == NAME, f"model.toml name {manifest.get('name')!r}")
    expect(manifest.get("task") == "tensor", f"model.toml task {manifest.get('task')!r}")
    expect([i.get("name") for i in manifest.get("inputs", [])] == ["X"],
           f"model.toml inputs {manifest.get('inputs')!r}")
    expect([o.get("datatype") for o in manifest.get("outputs", [])] == ["INT64", "FP32"],
           f"model.toml outputs {manifest.get('outputs')!r}")
    return str(folder.relative_to(r.work))


def add_mlp(r: Run):
    """A second estimator: a small MLP, whose label tract computes as a dimension (TDim);
    inferd must hand it out as INT64, equal to onnxruntime's."""
    x, y = load_breast_cancer(return_X_y=True)
    pipe = make_pipeline(StandardScaler(),
                         MLPClassifier(hidden_layer_sizes=(16,), max_iter=2000, random_state=0))
    pipe.fit(x.astype(np.float32), y)
    path = r.src / "mlp.onnx"
    model = to_onnx(pipe, np.zeros((1, FEATURES), dtype=np.float32),
                    options={MLPClassifier: {"zipmap": False}, StandardScaler: {"div": "div_cast"}},
                    target_opset={"": 17, "ai.onnx.ml": 3})
    onnx.save(model, str(path))
    r.mlp_ref = Reference(path)
    r.inferd_ok("model", "add", str(path), "--name", "mlp", "--models", str(r.models))
    ops = sorted({n.op_type for n in model.graph.node})
    return f"models/mlp/1 ({', '.join(ops)})"


# --- checks: the first server ----------------------------------------------------------------


def start_server(r: Run):
    r.state = harness.provision(r.bin, r.work, r.models)
    r.predict_key = r.state.add_api_key("predictor", "predict")
    return r.start("serve.log")


def infer_matches_onnxruntime(r: Run):
    one = r.expect_answers_as(1, rows=1)
    many = r.expect_answers_as(1, rows=64)
    r.expect_answers_as(1, route="1", rows=64)
    return f"{one}; {many}; /versions/1 too"


def mlp_matches_onnxruntime(r: Run):
    labels, probs, _ = r.infer(r.x, model="mlp")
    want_labels, want_probs = r.mlp_ref.run(r.x)
    expect(labels.dtype == np.int64 and np.array_equal(labels, want_labels),
           f"mlp labels {labels.dtype} {labels[:8]} != onnxruntime's {want_labels[:8]}")
    diff = float(np.abs(probs - want_probs).max())
    expect(diff <= TOLERANCE, f"mlp probabilities differ from onnxruntime's by {diff:.1e}")
    return f"{len(r.x)} rows, labels equal, max diff {diff:.1e}"


def admin_needs_admin_scope(r: Run):
    got = r.expect_refused(lambda: r.client.load_model(NAME, headers=r.hdr(r.predict_key)),
                           "load_model with a predict-only key", ("403",))
    r.expect_refused(lambda: r.client.unload_model(NAME, headers={}),
                     "unload_model without a key", ("401",))
    r.expect_refused(lambda: r.client.get_model_repository_index(headers=r.hdr(r.predict_key)),
                     "index with a predict-only key", ("403",))
    r.expect_answers_as(1, rows=4)  # and nothing was unloaded
    return got


def index_after_start(r: Run):
    idx = r.index()
    expect(idx.get((NAME, "1"), {}).get("state") == "READY", f"{NAME} v1 not READY: {idx}")
    expect(idx.get(("digits", "1"), {}).get("state") == "READY", f"digits v1 not READY: {idx}")
    return "; ".join(f"{n} v{v} {e['state']}" for (n, v), e in sorted(idx.items()))


def model_config(r: Run):
    details = []
    for version in ("", "1"):
        c = r.client.get_model_config(NAME, version, headers=r.hdr())
        expect(isinstance(c, dict) and c.get("name") == NAME, f"config name: {c!r}")
        expect(isinstance(c.get("platform"), str) and c["platform"], f"platform: {c!r}")
        expect(isinstance(c.get("max_batch_size"), int) and c["max_batch_size"] >= 1,
               f"max_batch_size: {c!r}")
        ins = {t.get("name"): t for t in c.get("input", [])}
        outs = {t.get("name"): t for t in c.get("output", [])}
        expect(list(ins) == ["X"], f"config input {c.get('input')!r}")
        expect(ins["X"].get("data_type") == "TYPE_FP32"
               and [int(d) for d in ins["X"].get("dims", [])] == [FEATURES],
               f"config input X {ins['X']!r}, want TYPE_FP32 dims [{FEATURES}] (no batch axis)")
        expect(set(outs) == {"label", "probabilities"}, f"config output {c.get('output')!r}")
        expect(outs["label"].get("data_type") == "TYPE_INT64"
               and [int(d) for d in outs["label"].get("dims", [])] in ([], [1]),
               f"config output label {outs['label']!r}, want TYPE_INT64 dims [] or [1]")
        if outs["label"].get("dims") == [1]:  # Triton's spelling of a batch-only output
            expect(outs["label"].get("reshape") == {"shape": []},
                   f"config output label {outs['label']!r}: dims [1] without reshape {{shape: []}}")
        expect(outs["probabilities"].get("data_type") == "TYPE_FP32"
               and [int(d) for d in outs["probabilities"].get("dims", [])] == [CLASSES],
               f"config output probabilities {outs['probabilities']!r}, want TYPE_FP32 "
               f"dims [{CLASSES}]")
        expect(c.get("version_policy") == {"latest": {"num_versions": 1}},
               f"version_policy {c.get('version_policy')!r}, want the default latest 1")
        details.append(c)
    digits = r.client.get_model_config("digits", headers=r.hdr())
    expect(digits.get("name") == "digits", f"digits config {digits!r}")
    c = details[0]
    return f"platform {c['platform']!r}, max_batch_size {c['max_batch_size']}"


def add_v2_then_load(r: Run):
    # The second add goes through --config (the server's own file names the models dir).
    r.inferd_ok("model", "add", str(r.onnx[2]), "--name", NAME, "--version", "2",
                "--config", str(r.state.config))
    expect((r.models / NAME / "2" / "model.onnx").read_bytes() == r.onnx[2].read_bytes(),
           f"model add --config did not write {r.models / NAME / '2'}")
    r.expect_answers_as(1, rows=8)  # nothing changes before the load
    r.load()
    got = r.expect_answers_as(2)
    r.expect_answers_as(2, route="2")
    idx = r.index()
    expect(ready_versions(idx) == ["2"], f"READY versions of {NAME}: {ready_versions(idx)}, "
           f"want ['2'] (version policy latest 1): {idx}")
    refused = r.expect_refused(lambda: r.infer(r.x[:1], "1"), "infer on versions/1")
    expect(r.client.is_model_ready(NAME, "1", headers=r.hdr()) is False, "v1 still ready")
    return f"{got}; v1: {refused}"


def broken_v3_keeps_v2(r: Run):
    v3 = r.models / NAME / "3"
    v3.mkdir()
    manifest = (r.models / NAME / "2" / "model.toml").read_text()
    (v3 / "model.toml").write_text(re.sub(r'(?m)^version = "2"$', 'version = "3"', manifest))
    data = r.onnx[2].read_bytes()
    (v3 / "model.onnx").write_bytes(data[: len(data) // 2])
    try:
        refused = r.expect_refused(r.load, "load_model with a truncated v3")
        r.expect_answers_as(2)
        idx = r.index()
        entry = idx.get((NAME, "3"))
        expect(entry is not None, f"no index entry for {NAME} v3: {idx}")
        expect(entry["state"] == "UNAVAILABLE" and entry.get("reason"),
               f"{NAME} v3 entry {entry}, want UNAVAILABLE with a reason")
        expect(ready_versions(idx) == ["2"], f"READY versions {ready_versions(idx)}: {idx}")
    finally:
        shutil.rmtree(v3)  # the later loads need a repository that loads
    return f"load: {refused}; index v3 reason: {entry['reason']!r}"


def unload_refuses(r: Run):
    r.client.unload_model(NAME, headers=r.hdr())
    refused = r.expect_refused(lambda: r.infer(r.x[:1]), "infer after unload")
    expect(r.client.is_model_ready(NAME, headers=r.hdr()) is False, "ready after unload")
    idx = r.index()
    mine = {k: e for k, e in idx.items() if k[0] == NAME}
    expect(mine and all(e["state"] == "UNAVAILABLE" for e in mine.values()),
           f"{NAME} after unload: {mine or 'no entry'}, want every entry UNAVAILABLE")
    expect(idx.get(("digits", "1"), {}).get("state") == "READY", f"digits not READY: {idx}")
    digits = httpclient.InferInput("input", [1, 64], "FP32")
    digits.set_data_from_numpy(np.zeros((1, 64), dtype=np.float32))
    r.client.infer("digits", [digits], headers=r.hdr())
    return f"infer: {refused}; index {sorted((v, e['state']) for (_, v), e in mine.items())}"


def load_again(r: Run):
    r.load()
    got = r.expect_answers_as(2)
    idx = r.index()
    expect(ready_versions(idx) == ["2"], f"READY versions {ready_versions(idx)}: {idx}")
    return got


def statistics_count_requests(r: Run):
    before = r.stats("2")
    started_ms = int(time.time() * 1000)
    for i in range(STATS_REQUESTS):
        r.infer(r.x[i * STATS_BATCH:(i + 1) * STATS_BATCH])
    after = r.stats("2")
    delta = {k: after[k] - before[k] for k in ("inference_count", "execution_count")}
    for k in ("success", "queue", "compute_input", "compute_infer", "compute_output"):
        delta[k] = after["inference_stats"][k]["count"] - before["inference_stats"][k]["count"]
    want = {"inference_count": STATS_REQUESTS * STATS_BATCH,
            "execution_count": STATS_REQUESTS, "success": STATS_REQUESTS, "queue": STATS_REQUESTS,
            "compute_input": STATS_REQUESTS, "compute_infer": STATS_REQUESTS,
            "compute_output": STATS_REQUESTS}
    expect(delta == want, f"after {STATS_REQUESTS} requests of {STATS_BATCH}: counts grew by "
           f"{delta}, want {want}")
    ns = after["inference_stats"]["success"]["ns"] - before["inference_stats"]["success"]["ns"]
    expect(ns > 0, f"success.ns grew by {ns}")
    expect(after["inference_stats"]["fail"]["count"] == before["inference_stats"]["fail"]["count"],
           "fail.count grew on successful requests")
    expect(started_ms - 60_000 <= after["last_inference"] <= int(time.time() * 1000) + 60_000,
           f"last_inference {after['last_inference']} is not ms since the epoch, now")
    bare = r.stats()
    expect(str(bare.get("version")) == "2", f"stats without a version: {bare!r}")
    return (f"{STATS_REQUESTS} x batch {STATS_BATCH}: inference_count "
            f"{after['inference_count']}, execution_count {after['execution_count']}, "
            f"success {after['inference_stats']['success']}")


def statistics_refused_request(r: Run):
    before = r.stats("2")
    bad = httpclient.InferInput("X", [1, FEATURES - 1], "FP32")
    bad.set_data_from_numpy(np.zeros((1, FEATURES - 1), dtype=np.float32))
    refused = r.expect_refused(lambda: r.client.infer(NAME, [bad], headers=r.hdr()),
                               "infer with 29 features", ("422",))
    after = r.stats("2")
    for k in ("inference_count", "execution_count"):
        expect(after[k] == before[k], f"{k} counted a refused request: {before[k]} -> {after[k]}")
    grew = {k: after["inference_stats"][k]["count"] - before["inference_stats"][k]["count"]
            for k in ("success", "fail")}
    # Triton counts a request the model refuses as a failure; inferd does the same.
    expect(grew == {"success": 0, "fail": 1},
           f"one refused request grew the counts by {grew}, want success +0, fail +1")
    return f"{refused}; fail.count +1"


def statistics_all_models(r: Run):
    body = r.client.get_inference_statistics(headers=r.hdr())
    names = {(e.get("name"), str(e.get("version"))) for e in body.get("model_stats", [])}
    expect({("digits", "1"), (NAME, "2")} <= names, f"model_stats of every model: {sorted(names)}")
    r.expect_refused(lambda: r.client.get_inference_statistics(headers={}),
                     "statistics without a key", ("401",))
    return f"{sorted(names)}"


def policy_all_by_sighup(r: Run):
    config = r.state.config
    before = config.read_text()
    config.write_text(before + f'\n[models.version_policies]\n{NAME} = "all"\n')
    try:
        r.server.reload()
        deadline = time.monotonic() + 30
        while (versions := ready_versions(r.index())) != ["1", "2"]:
            expect(time.monotonic() < deadline, f"30 s after SIGHUP with {NAME} = \"all\": "
                   f"READY versions {versions}, want ['1', '2']")
            time.sleep(0.05)
        r.expect_answers_as(1, route="1")
        r.expect_answers_as(2, route="2")
        got = r.expect_answers_as(2)  # the bare route: the highest version
        policy = r.client.get_model_config(NAME, headers=r.hdr()).get("version_policy")
        expect(policy == {"all": {}}, f"config version_policy {policy!r}, want {{'all': {{}}}}")
    finally:
        config.write_text(before)  # the signed server starts from this config too
    return f"v1 and v2 READY; bare route {got}"


def stop_server(r: Run):
    r.stop()
    return "exit 0 after SIGTERM"


# --- checks: signed versions -------------------------------------------------------------------


def sign(r: Run, folder: Path) -> None:
    """`inferd model sign`, then the result checked with stock tools: `sha256sum -c` on the
    manifest, `openssl pkeyutl -verify` on its detached Ed25519 signature."""
    key = next(r.keys.glob("*.key.pem"))
    r.inferd_ok("model", "sign", str(folder), "--key", str(key))
    expect((folder / "MANIFEST.sha256").is_file() and (folder / "MANIFEST.sha256.sig").is_file(),
           f"model sign wrote no MANIFEST.sha256(.sig) in {folder}")
    sums = subprocess.run(["sha256sum", "--check", "--strict", "MANIFEST.sha256"], cwd=folder,
                          capture_output=True, text=True)
    expect(sums.returncode == 0, f"sha256sum -c MANIFEST.sha256 in {folder}: "
           f"{one_line(sums.stdout + sums.stderr)}")
    listed = {line.split(maxsplit=1)[1].lstrip("*") for line in
              (folder / "MANIFEST.sha256").read_text().splitlines() if line.strip()}
    expect({"model.onnx", "model.toml"} <= listed, f"MANIFEST.sha256 lists {sorted(listed)}")
    if shutil.which("openssl"):
        public = next(r.trusted.glob("*.pem"))
        ver = subprocess.run(["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", str(public),
                              "-rawin", "-in", str(folder / "MANIFEST.sha256"),
                              "-sigfile", str(folder / "MANIFEST.sha256.sig")],
                             capture_output=True, text=True)
        expect(ver.returncode == 0, f"openssl pkeyutl -verify of {folder}/MANIFEST.sha256.sig: "
               f"{one_line(ver.stdout + ver.stderr)}")


def signed_version_loads(r: Run):
    r.inferd_ok("keygen", "--out", str(r.keys))
    private = list(r.keys.glob("*.key.pem"))
    public = [p for p in r.keys.glob("*.pem") if not p.name.endswith(".key.pem")]
    expect(len(private) == 1 and len(public) == 1,
           f"keygen wrote {sorted(p.name for p in r.keys.iterdir())}, want KID.key.pem + KID.pem")
    r.trusted.mkdir()
    shutil.copy(public[0], r.trusted)
    sign(r, r.add(1, r.signed))
    got = r.start("serve-signed.log", {"INFERD_MODELS_DIR": str(r.signed),
                                       "INFERD_MODELS_REQUIRE_SIGNED": "true",
                                       "INFERD_MODELS_TRUSTED_KEYS_DIR": str(r.trusted)})
    answer = r.expect_answers_as(1)
    expect(ready_versions(r.index()) == ["1"], f"signed v1 not READY: {r.index()}")
    return f"{got}; {answer}"


def tampered_version_refused(r: Run):
    folder = r.add(2, r.signed, "--version", "2")
    sign(r, folder)
    # One byte of a weight (the lowest bit of a LinearClassifier coefficient): the file stays
    # a valid model that onnxruntime runs, so only the signature can refuse it.
    model = onnx.load(str(folder / "model.onnx"))
    node = next(n for n in model.graph.node if n.op_type == "LinearClassifier")
    coef = next(a for a in node.attribute if a.name == "coefficients").floats[0]
    data = bytearray((folder / "model.onnx").read_bytes())
    at = data.find(struct.pack("<f", coef))
    expect(at >= 0, "cannot find a coefficient's bytes in model.onnx")
    r.tamper = (folder / "model.onnx", at, bytes(data[at:at + 1]))
    data[at] ^= 0x01
    (folder / "model.onnx").write_bytes(bytes(data))
    Reference(folder / "model.onnx")  # still a model onnxruntime loads
    refused = r.expect_refused(r.load, "load_model of a tampered signed v2")
    r.expect_answers_as(1)
    entry = r.index().get((NAME, "2"))
    expect(entry is not None and entry["state"] == "UNAVAILABLE" and entry.get("reason"),
           f"index entry of the tampered v2: {entry}, want UNAVAILABLE with a reason")
    expect(SIGN_RE.search(entry["reason"]), f"v2's reason does not say signature or manifest: "
           f"{entry['reason']!r}")
    return f"load: {refused}; index: {entry['reason']!r}"


def restored_version_loads(r: Run):
    # The same folder with its byte put back loads: the refusal was the tampering's.
    path, at, byte = r.tamper
    data = bytearray(path.read_bytes())
    data[at:at + 1] = byte
    path.write_bytes(bytes(data))
    r.load()
    return r.expect_answers_as(2)


def unsigned_version_refused(r: Run):
    outside = r.work / "unsigned"  # a plain add outside the repository, moved in as v3
    outside.mkdir()
    v3 = r.signed / NAME / "3"
    r.add(1, outside).rename(v3)
    toml = v3 / "model.toml"
    toml.write_text(re.sub(r'(?m)^version = "1"$', 'version = "3"', toml.read_text()))
    refused = r.expect_refused(r.load, "load_model of an unsigned v3")
    r.expect_answers_as(2)
    entry = r.index().get((NAME, "3"))
    expect(entry is not None and entry["state"] == "UNAVAILABLE" and entry.get("reason"),
           f"index entry of the unsigned v3: {entry}, want UNAVAILABLE with a reason")
    return f"load: {refused}; index: {entry['reason']!r}"


# --- the runner ----------------------------------------------------------------------------------

# (name, check, fatal): a fatal check's failure skips the rest (they need what it builds).
CHECKS = [
    ("sklearn pipeline -> skl2onnx -> onnxruntime reference (v1, v2)", make_models, True),
    ("inferd model inspect", inspect_text, False),
    ("inferd model inspect --json", inspect_json, False),
    ("inferd model inspect/add name what tract lacks (Scaler), leaving nothing",
     unsupported_op_named, False),
    ("inferd model add refuses a truncated file, leaving nothing", add_refuses_broken_file, False),
    ("inferd model add -> v1", add_v1, True),
    ("inferd model add: a second estimator (MLP, INT64 label from a tract TDim)", add_mlp, False),
    ("inferd serve (digits + cancer v1)", start_server, True),
    ("tritonclient infer, binary tensors = onnxruntime (1e-3, labels)", infer_matches_onnxruntime,
     True),
    ("tritonclient infer on the MLP = onnxruntime", mlp_matches_onnxruntime, False),
    ("repository routes need the admin scope (403, 401)", admin_needs_admin_scope, False),
    ("tritonclient get_model_repository_index", index_after_start, False),
    ("tritonclient get_model_config", model_config, False),
    ("model add v2 + load_model: v2 answers, v1 unavailable", add_v2_then_load, True),
    ("broken v3: load_model refused, v2 answers, index says why", broken_v3_keeps_v2, True),
    ("unload_model: inference refused, index UNAVAILABLE", unload_refuses, True),
    ("load_model again: v2 answers", load_again, True),
    ("get_inference_statistics counts the requests sent", statistics_count_requests, False),
    ("get_inference_statistics and a refused request", statistics_refused_request, False),
    ("get_inference_statistics of every model", statistics_all_models, False),
    ("version policy \"all\" by SIGHUP: v1 and v2 answer", policy_all_by_sighup, False),
    ("SIGTERM: exit 0", stop_server, True),
    ("require_signed: a signed version loads and answers", signed_version_loads, True),
    ("require_signed: a tampered version is refused, v1 answers", tampered_version_refused, True),
    ("require_signed: the same version untampered loads", restored_version_loads, False),
    ("require_signed: an unsigned version is refused", unsigned_version_refused, False),
    ("SIGTERM: exit 0 (signed server)", stop_server, True),
]


def run_check(name, check, run) -> bool:
    """Runs one check and prints its line; True if it passed."""
    try:
        detail = check(run)
    except CheckFailed as e:
        print(f"FAIL {name}: {e}", flush=True)
    except InferenceServerException as e:
        print(f"FAIL {name}: InferenceServerException status={e.status()!r} "
              f"message={e.message()!r}", flush=True)
    except Exception as e:  # noqa: BLE001 - any surprise is a failed check, with where
        tb = traceback.format_exc().strip().splitlines()
        where = tb[-3].strip() if len(tb) >= 3 else ""
        print(f"FAIL {name}: {type(e).__name__}: {e} ({where})", flush=True)
    else:
        print(f"ok {name}" + (f" ({detail})" if detail else ""), flush=True)
        return True
    return False


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", required=True, help="the inferd binary")
    ap.add_argument("--work", required=True, help="an empty work folder (kept by the caller)")
    args = ap.parse_args()
    work = Path(args.work)
    if not work.is_dir() or any(work.iterdir()):
        ap.error(f"--work {work}: not an empty folder")
    run = Run(args.bin, work)
    passed = failed = skipped = 0
    try:
        for i, (name, check, fatal) in enumerate(CHECKS):
            if run_check(name, check, run):
                passed += 1
                continue
            failed += 1
            if fatal:
                for rest, _, _ in CHECKS[i + 1:]:
                    print(f"skip {rest}: needs \"{name}\"", flush=True)
                    skipped += 1
                break
    finally:
        if run.client is not None:
            run.client.close()
        if run.server is not None:
            run.server.kill()
    print(f"{passed} passed, {failed} failed, {skipped} skipped", flush=True)
    return 1 if failed or skipped else 0


if __name__ == "__main__":
    sys.exit(main())
