#!/usr/bin/env python3
"""Conformance check: drive a running inferd with real, standard Open Inference Protocol clients.

Clients used:
  * tritonclient.http (the official Triton HTTP client; binary tensor extension by default),
  * plain `requests` for /predict and the KServe v2 JSON infer body,
  * the Prometheus project's Python parsers for /metrics.

Usage:
  python scripts/oip_clients.py --url 127.0.0.1:PORT --key KEY --ca CA_PEM [--strict]

Every check is a function of its own, listed by name in CHECKS (and STRICT_CHECKS, run with
--strict); they run in that order. Prints one line per check ("ok <name>" or "FAIL <name>:
<why>") and a final line "N passed, M failed"; exits 1 if any check failed (2 on a usage
error).

Nothing here works around server behaviour: a check fails when the server answers something that
tritonclient or the KServe v2 / Triton binary-extension spec does not expect.
"""

import argparse
import json
import os
import sys
import traceback

import gevent.ssl
import numpy as np
import requests
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families as parse_prometheus

HERE = os.path.dirname(os.path.abspath(__file__))
MODELS = os.path.join(os.path.dirname(HERE), "models")

POSITIVE = "This is the best purchase I have ever made. Absolutely wonderful, I love it!"
NEGATIVE = "Terrible product. It broke after one day and was a complete waste of money."


class CheckFailed(Exception):
    pass


def expect(cond, msg):
    if not cond:
        raise CheckFailed(msg)


# --- what the checks share -----------------------------------------------------------------


class Server:
    """The server under test as the checks see it: its address and key, a tritonclient and a
    requests session for it, and the digit cases with their expected answers."""

    def __init__(self, url, key, ca):
        self.ca = ca
        self.key = key
        self.base = f"https://{url}"
        self.x, self.y, self.p_ref = load_digit_cases()

        # geventhttpclient calls the factory as factory(cafile=<its default bundle>) and the
        # socket is a gevent one, so: a gevent SSLContext that trusts only our CA, whatever
        # cafile it is handed. check_hostname stays on (insecure=False): the certificate must
        # name 127.0.0.1/localhost.
        def ssl_context_factory(*_args, **_kwargs):
            return gevent.ssl.create_default_context(cafile=ca)

        self.client = httpclient.InferenceServerClient(
            url=url,
            ssl=True,
            ssl_context_factory=ssl_context_factory,
            insecure=False,
            connection_timeout=30.0,
            network_timeout=60.0,
        )
        self.session = requests.Session()

    def hdr(self):
        # A fresh dict per call: tritonclient's infer() writes Inference-Header-Content-Length
        # (and compression headers) into the headers dict it is given, so a shared dict would
        # carry a stale binary-extension header into the next request.
        return {"X-API-Key": self.key}

    def req(self, method, path, **kw):
        # verify= per request: a session-level verify loses to REQUESTS_CA_BUNDLE in the env.
        return self.session.request(method, self.base + path, timeout=60, verify=self.ca, **kw)

    def small_digits_input(self):
        inp = httpclient.InferInput("input", [1, 64], "FP32")
        inp.set_data_from_numpy(self.x[:1])
        return inp

    def close(self):
        self.client.close()
        self.session.close()


def load_digit_cases():
    with open(os.path.join(MODELS, "digits", "cases.json")) as f:
        cases = json.load(f)
    x = np.asarray([c["input"] for c in cases], dtype=np.float32)
    y = np.asarray([c["label"] for c in cases], dtype=np.int64)
    p = np.asarray([c["probabilities"] for c in cases], dtype=np.float32)
    expect(x.shape[1:] == (64,), f"cases.json inputs have shape {x.shape}")
    return x, y, p


def expect_status(fn, status, what):
    """fn() must raise InferenceServerException with this status and a KServe error body."""
    try:
        fn()
    except InferenceServerException as e:
        expect(
            e.status() == status,
            f"{what}: status {e.status()!r} (message {e.message()!r}), want {status!r}",
        )
        expect(
            e.message() and not e.message().startswith("an exception occurred in the client"),
            f"{what}: error body not a KServe error object: {e.message()!r}",
        )
        return f"{status}: {e.message()}"
    raise CheckFailed(f"{what}: no InferenceServerException raised")


# --- health and metadata (tritonclient) ------------------------------------------------------


def server_live(s):
    expect(s.client.is_server_live() is True, "is_server_live() returned False")


def server_live_with_key(s):
    # The health routes are open; a key on them must not hurt either.
    expect(s.client.is_server_live(headers=s.hdr()) is True, "is_server_live(headers=key) False")


def server_ready(s):
    expect(s.client.is_server_ready() is True, "is_server_ready() returned False")


def server_metadata(s):
    md = s.client.get_server_metadata(headers=s.hdr())
    expect(isinstance(md, dict), f"not a JSON object: {md!r}")
    for k in ("name", "version", "extensions"):
        expect(k in md, f"server metadata lacks {k!r}: {md!r}")
    expect(isinstance(md["name"], str) and md["name"], f"name {md['name']!r}")
    expect(isinstance(md["version"], str) and md["version"], f"version {md['version']!r}")
    expect(
        isinstance(md["extensions"], list)
        and all(isinstance(e, str) for e in md["extensions"]),
        f"extensions must be a list of strings: {md['extensions']!r}",
    )
    expect(
        "binary_tensor_data" in md["extensions"],
        f"binary_tensor_data not advertised: {md['extensions']!r}",
    )
    return f"{md['name']} {md['version']} {md['extensions']}"


def model_ready(s):
    expect(s.client.is_model_ready("digits", headers=s.hdr()) is True, "digits not ready")
    expect(s.client.is_model_ready("sentiment", headers=s.hdr()) is True, "sentiment not ready")
    expect(s.client.is_model_ready("digits", "1", headers=s.hdr()) is True, "digits v1 not ready")


def model_metadata_digits(s):
    md = s.client.get_model_metadata("digits", headers=s.hdr())
    expect(md.get("name") == "digits", f"name {md.get('name')!r}")
    expect(isinstance(md.get("platform"), str), f"platform {md.get('platform')!r}")
    expect("1" in md.get("versions", []), f"versions {md.get('versions')!r}")
    ins = {t["name"]: t for t in md.get("inputs", [])}
    outs = {t["name"]: t for t in md.get("outputs", [])}
    expect(
        ins.get("input", {}).get("datatype") == "FP32"
        and list(ins["input"].get("shape", [])) == [-1, 64],
        f"inputs {md.get('inputs')!r}",
    )
    expect(
        outs.get("probabilities", {}).get("datatype") == "FP32"
        and list(outs["probabilities"].get("shape", [])) == [-1, 10],
        f"outputs {md.get('outputs')!r}",
    )


def model_metadata_sentiment_v1(s):
    md = s.client.get_model_metadata("sentiment", model_version="1", headers=s.hdr())
    expect(md.get("name") == "sentiment", f"name {md.get('name')!r}")
    ins = {t["name"]: t for t in md.get("inputs", [])}
    outs = {t["name"]: t for t in md.get("outputs", [])}
    expect(ins.get("text", {}).get("datatype") == "BYTES", f"inputs {md.get('inputs')!r}")
    expect(outs.get("label", {}).get("datatype") == "BYTES", f"outputs {md.get('outputs')!r}")
    expect(
        outs.get("probabilities", {}).get("datatype") == "FP32",
        f"outputs {md.get('outputs')!r}",
    )


# --- digits inference (tritonclient) ---------------------------------------------------------


def digits_infer(s, in_binary, out_binary, request_id="", version=""):
    """Every digit case in one batch, each way of encoding input and output; answers as in
    cases.json."""
    x, y = s.x, s.y
    inp = httpclient.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=in_binary)
    out = httpclient.InferRequestedOutput("probabilities", binary_data=out_binary)
    res = s.client.infer(
        "digits",
        [inp],
        model_version=version,
        outputs=[out],
        request_id=request_id,
        headers=s.hdr(),
    )
    resp = res.get_response()
    expect(resp.get("model_name") == "digits", f"model_name {resp.get('model_name')!r}")
    if request_id:
        expect(resp.get("id") == request_id, f"id {resp.get('id')!r} != {request_id!r}")
    meta = res.get_output("probabilities")
    expect(meta is not None, f"no 'probabilities' output in {resp!r}")
    expect(meta.get("datatype") == "FP32", f"datatype {meta.get('datatype')!r}")
    expect(list(meta.get("shape", [])) == [len(x), 10], f"shape {meta.get('shape')!r}")
    params = meta.get("parameters") or {}
    if out_binary:
        expect(
            "binary_data_size" in params and "data" not in meta,
            f"binary output requested but got {meta!r}",
        )
        expect(
            params["binary_data_size"] == len(x) * 10 * 4,
            f"binary_data_size {params['binary_data_size']} != {len(x) * 40}",
        )
    else:
        expect(
            "data" in meta and "binary_data_size" not in params,
            f"JSON output requested but got {meta!r}",
        )
    probs = res.as_numpy("probabilities")
    expect(probs is not None, "as_numpy('probabilities') is None")
    expect(probs.dtype == np.float32, f"dtype {probs.dtype}")
    expect(probs.shape == (len(x), 10), f"numpy shape {probs.shape}")
    pred = probs.argmax(axis=1)
    wrong = [(i, int(pred[i]), int(y[i])) for i in range(len(y)) if pred[i] != y[i]]
    expect(not wrong, f"argmax != label for (case, got, want) {wrong}")
    expect(
        np.allclose(probs.sum(axis=1), 1.0, atol=1e-3),
        f"rows do not sum to 1: {probs.sum(axis=1)}",
    )
    diff = float(np.abs(probs - s.p_ref).max())
    expect(diff < 1e-3, f"max |p - cases.json p| = {diff:.2e}")
    return f"{len(x)} cases, argmax == label, max |dp| {diff:.1e}"


def digits_default_outputs(s):
    # outputs=None: tritonclient sets parameters.binary_data_output = true for all outputs.
    res = s.client.infer("digits", [s.small_digits_input()], model_version="1", headers=s.hdr())
    meta = res.get_output("probabilities")
    expect(meta is not None, f"no 'probabilities' output in {res.get_response()!r}")
    expect(
        "binary_data_size" in (meta.get("parameters") or {}),
        f"binary_data_output=true but output is {meta!r}",
    )
    probs = res.as_numpy("probabilities")
    expect(probs.shape == (1, 10), f"shape {probs.shape}")
    expect(int(probs.argmax()) == int(s.y[0]), f"argmax {int(probs.argmax())} != {int(s.y[0])}")
    resp = res.get_response()
    expect(resp.get("model_version") in (None, "1"), f"model_version {resp.get('model_version')!r}")


# --- sentiment inference (tritonclient, BYTES) -----------------------------------------------

TEXTS = np.array([POSITIVE, NEGATIVE], dtype=np.object_)


def decoded(labels):
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in labels]


def sentiment_infer(s, binary):
    inp = httpclient.InferInput("text", [len(TEXTS)], "BYTES")
    inp.set_data_from_numpy(TEXTS, binary_data=binary)
    outs = [
        httpclient.InferRequestedOutput("label", binary_data=binary),
        httpclient.InferRequestedOutput("probabilities", binary_data=binary),
    ]
    res = s.client.infer("sentiment", [inp], outputs=outs, headers=s.hdr())
    lmeta = res.get_output("label")
    expect(lmeta is not None, f"no 'label' output in {res.get_response()!r}")
    expect(lmeta.get("datatype") == "BYTES", f"label datatype {lmeta.get('datatype')!r}")
    expect(list(lmeta.get("shape", [])) == [2], f"label shape {lmeta.get('shape')!r}")
    if binary:
        expect(
            "binary_data_size" in (lmeta.get("parameters") or {}),
            f"binary label requested, got {lmeta!r}",
        )
    labels = res.as_numpy("label")
    expect(labels is not None and labels.shape == (2,), f"label array {labels!r}")
    got = decoded(labels)
    expect(got == ["positive", "negative"], f"labels {got!r} for {list(TEXTS)!r}")
    probs = res.as_numpy("probabilities")
    expect(probs is not None and probs.shape == (2, 2), f"probabilities {probs!r}")
    expect(probs.dtype == np.float32, f"dtype {probs.dtype}")
    expect(probs[0, 1] > 0.5 and probs[1, 0] > 0.5, f"probabilities disagree with labels {probs}")
    return f"labels {got}, p(pos) {probs[0, 1]:.3f}/{probs[1, 1]:.3f}"


def sentiment_default_outputs(s):
    inp = httpclient.InferInput("text", [len(TEXTS)], "BYTES")
    inp.set_data_from_numpy(TEXTS)
    res = s.client.infer("sentiment", [inp], headers=s.hdr())
    labels = res.as_numpy("label")
    expect(labels is not None, f"no 'label' output in {res.get_response()!r}")
    got = decoded(labels)
    expect(got == ["positive", "negative"], f"labels {got!r}")
    expect(res.as_numpy("probabilities") is not None, "no 'probabilities' output")


# --- error mapping (tritonclient) ------------------------------------------------------------


def infer_without_key(s):
    return expect_status(
        lambda: s.client.infer("digits", [s.small_digits_input()]), "401", "infer without key"
    )


def infer_with_wrong_key(s):
    wrong = {"X-API-Key": "inferd_" + "0" * 64}
    return expect_status(
        lambda: s.client.infer("digits", [s.small_digits_input()], headers=wrong),
        "401",
        "infer with wrong key",
    )


def metadata_without_key(s):
    return expect_status(
        lambda: s.client.get_model_metadata("digits"), "401", "metadata without key"
    )


def model_ready_without_key(s):
    expect(s.client.is_model_ready("digits") is False, "ready without a key")


def infer_unknown_model(s):
    return expect_status(
        lambda: s.client.infer("no-such-model", [s.small_digits_input()], headers=s.hdr()),
        "404",
        "infer unknown model",
    )


def metadata_unknown_model(s):
    return expect_status(
        lambda: s.client.get_model_metadata("no-such-model", headers=s.hdr()),
        "404",
        "metadata unknown model",
    )


def model_ready_unknown_model(s):
    expect(
        s.client.is_model_ready("no-such-model", headers=s.hdr()) is False, "unknown model ready"
    )


def infer_unknown_version(s):
    return expect_status(
        lambda: s.client.infer(
            "digits", [s.small_digits_input()], model_version="999", headers=s.hdr()
        ),
        "404",
        "infer unknown version",
    )


def infer_wrong_shape(s):
    inp = httpclient.InferInput("input", [1, 63], "FP32")
    inp.set_data_from_numpy(s.x[:1, :63])
    return expect_status(
        lambda: s.client.infer("digits", [inp], headers=s.hdr()), "422", "infer wrong shape"
    )


# --- plain requests --------------------------------------------------------------------------


def predict(s):
    out = {}
    for text, want in ((POSITIVE, "positive"), (NEGATIVE, "negative")):
        resp = s.req("POST", "/predict", json={"text": text}, headers=s.hdr())
        expect(resp.status_code == 200, f"HTTP {resp.status_code}: {resp.text[:300]}")
        body = resp.json()
        for k in ("prediction", "score", "scores", "model", "model_version"):
            expect(k in body, f"/predict response lacks {k!r}: {body!r}")
        expect(body["prediction"] == want, f"prediction {body['prediction']!r} for {text!r}")
        expect(body["model"] == "sentiment", f"model {body['model']!r}")
        out[want] = body["score"]
    return ", ".join(f"{k} {v:.3f}" for k, v in out.items())


def predict_without_key(s):
    resp = s.req("POST", "/predict", json={"text": POSITIVE})
    expect(resp.status_code == 401, f"HTTP {resp.status_code}: {resp.text[:300]}")
    expect("error" in resp.json(), f"401 body {resp.text[:300]!r}")
    expect("WWW-Authenticate" in resp.headers, f"401 without WWW-Authenticate: {resp.headers}")


def v2_json_digits(s):
    x, y = s.x, s.y
    body = {
        "id": "requests-1",
        "inputs": [
            {"name": "input", "shape": [len(x), 64], "datatype": "FP32",
             "data": x.reshape(-1).tolist()}
        ],
        "outputs": [{"name": "probabilities"}],
    }
    resp = s.req("POST", "/v2/models/digits/infer", json=body, headers=s.hdr())
    expect(resp.status_code == 200, f"HTTP {resp.status_code}: {resp.text[:300]}")
    expect(
        "Inference-Header-Content-Length" not in resp.headers,
        "pure JSON request answered with a binary-extension response",
    )
    got = resp.json()
    expect(got.get("model_name") == "digits", f"model_name {got.get('model_name')!r}")
    expect(got.get("id") == "requests-1", f"id {got.get('id')!r}")
    outs = {o["name"]: o for o in got.get("outputs", [])}
    o = outs.get("probabilities")
    expect(o is not None, f"outputs {got.get('outputs')!r}")
    expect(o.get("datatype") == "FP32" and o.get("shape") == [len(x), 10], f"output {o!r}"[:300])
    probs = np.asarray(o["data"], dtype=np.float32).reshape(len(x), 10)
    expect((probs.argmax(axis=1) == y).all(), f"argmax {probs.argmax(axis=1)} != labels {y}")
    return f"{len(x)} cases"


def v2_json_digits_nested(s):
    # KServe v2 allows tensor data row-major flattened or nested as the shape.
    body = {
        "inputs": [
            {"name": "input", "shape": [2, 64], "datatype": "FP32", "data": s.x[:2].tolist()}
        ]
    }
    resp = s.req("POST", "/v2/models/digits/infer", json=body, headers=s.hdr())
    expect(resp.status_code == 200, f"HTTP {resp.status_code}: {resp.text[:300]}")
    outs = {o["name"]: o for o in resp.json().get("outputs", [])}
    o = outs.get("probabilities")
    expect(o is not None, f"outputs {resp.text[:300]}")
    probs = np.asarray(o["data"], dtype=np.float32).reshape(2, 10)
    expect((probs.argmax(axis=1) == s.y[:2]).all(), f"argmax {probs.argmax(axis=1)}")


def v2_json_sentiment(s):
    body = {
        "inputs": [
            {"name": "text", "shape": [2], "datatype": "BYTES", "data": [POSITIVE, NEGATIVE]}
        ]
    }
    resp = s.req("POST", "/v2/models/sentiment/infer", json=body, headers=s.hdr())
    expect(resp.status_code == 200, f"HTTP {resp.status_code}: {resp.text[:300]}")
    outs = {o["name"]: o for o in resp.json().get("outputs", [])}
    lab = outs.get("label")
    expect(lab is not None, f"outputs {resp.text[:300]}")
    expect(lab.get("datatype") == "BYTES" and lab.get("shape") == [2], f"label {lab!r}")
    expect(lab.get("data") == ["positive", "negative"], f"labels {lab.get('data')!r}")
    pr = outs.get("probabilities")
    expect(pr is not None and pr.get("shape") == [2, 2], f"probabilities {pr!r}")


def v2_json_malformed(s):
    resp = s.req(
        "POST", "/v2/models/digits/infer", data=b'{"inputs": [',
        headers={**s.hdr(), "Content-Type": "application/json"},
    )
    expect(resp.status_code == 400, f"HTTP {resp.status_code}: {resp.text[:300]}")
    expect(isinstance(resp.json().get("error"), str), f"body {resp.text[:300]!r}")


def v2_health_routes(s):
    for path in ("/v2/health/live", "/v2/health/ready", "/v2/models/digits/ready"):
        resp = s.req("GET", path, headers=s.hdr())
        expect(resp.status_code == 200, f"GET {path}: HTTP {resp.status_code}")
    resp = s.req("GET", "/v2")
    expect(resp.status_code == 200, f"GET /v2: HTTP {resp.status_code}")
    expect(resp.json().get("name"), f"GET /v2 body {resp.text[:200]!r}")


# --- /metrics through the Prometheus project's own Python parsers (after the traffic above) --


def metrics_families(s, accept, parse):
    resp = s.req("GET", "/metrics", headers={**s.hdr(), "Accept": accept})
    expect(resp.status_code == 200, f"HTTP {resp.status_code}: {resp.text[:300]}")
    return resp.headers.get("Content-Type", ""), {f.name: f for f in parse(resp.text)}


def expect_inferd_families(families):
    requests_family = families.get("inferd_requests") or families.get("inferd_requests_total")
    expect(requests_family is not None and requests_family.type == "counter",
           f"no counter family inferd_requests: {sorted(families)}")
    infer_ok = [x for x in requests_family.samples
                if x.labels.get("route") == "/v2/models/infer" and x.labels.get("status") == "200"]
    expect(infer_ok and infer_ok[0].value > 0, "inferd_requests_total lacks the infers made")
    hist = families.get("inferd_inference_duration_seconds")
    expect(hist is not None and hist.type == "histogram", "no inference duration histogram")
    models = {x.labels.get("model") for x in hist.samples}
    expect({"digits", "sentiment"} <= models, f"inference series for {models}")
    buckets = {x.labels.get("bucket") for x in hist.samples if x.labels.get("model") == "sentiment"}
    expect(buckets - {None, "-"}, f"sentiment inference has no length-bucket label: {buckets}")


def metrics_openmetrics(s):
    ctype, families = metrics_families(
        s, "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
        parse_openmetrics)
    expect(ctype.startswith("application/openmetrics-text"), f"Content-Type {ctype}")
    expect_inferd_families(families)


def metrics_classic(s):
    ctype, families = metrics_families(s, "text/plain", parse_prometheus)
    expect(ctype.startswith("text/plain; version=0.0.4"), f"Content-Type {ctype}")
    expect_inferd_families(families)
    untyped = [n for n, f in families.items() if f.type == "unknown"]
    expect(not untyped, f"families the classic parser could not type: {untyped}")


# --- --strict: binary-extension corners tritonclient's API never sends -----------------------


def binary_body(s, header, blob):
    head = json.dumps(header).encode()
    return head + blob, {**s.hdr(), "Inference-Header-Content-Length": str(len(head))}


def split_binary(resp):
    n = resp.headers.get("Inference-Header-Content-Length")
    if n is None:
        return resp.json(), b""
    return json.loads(resp.content[: int(n)]), resp.content[int(n):]


def strict_output_override(s):
    # Spec: binary_data_output "... If "binary_data" is specified on an output it overrides
    # this setting."  So binary_data=false on an output wins over binary_data_output=true.
    body, headers = binary_body(
        s,
        {
            "parameters": {"binary_data_output": True},
            "inputs": [
                {"name": "input", "shape": [2, 64], "datatype": "FP32",
                 "parameters": {"binary_data_size": s.x[:2].nbytes}}
            ],
            "outputs": [{"name": "probabilities", "parameters": {"binary_data": False}}],
        },
        s.x[:2].tobytes(),
    )
    resp = s.req("POST", "/v2/models/digits/infer", data=body, headers=headers)
    expect(resp.status_code == 200, f"HTTP {resp.status_code}: {resp.text[:300]}")
    head, _ = split_binary(resp)
    o = {t["name"]: t for t in head.get("outputs", [])}.get("probabilities") or {}
    expect(
        "data" in o and "binary_data_size" not in (o.get("parameters") or {}),
        "request parameters.binary_data_output=true with outputs[probabilities]."
        "parameters.binary_data=false: the output must come back as JSON data (the "
        f"output-level flag overrides), got {json.dumps(o)[:200]}",
    )


def strict_raw_binary(s):
    # Spec "Raw Binary Request": Inference-Header-Content-Length: 0, body = the one input's
    # bytes; a model with one input and at most one variable dim takes it as batch 1, and
    # every output comes back in binary.
    resp = s.req(
        "POST",
        "/v2/models/digits/infer",
        data=s.x[:1].tobytes(),
        headers={**s.hdr(), "Inference-Header-Content-Length": "0",
                 "Content-Type": "application/octet-stream"},
    )
    expect(resp.status_code == 200, f"HTTP {resp.status_code}: {resp.text[:300]}")
    head, blob = split_binary(resp)
    o = {t["name"]: t for t in head.get("outputs", [])}.get("probabilities") or {}
    expect(o.get("shape") == [1, 10], f"output {o!r}")
    probs = np.frombuffer(blob, dtype="<f4")
    expect(probs.size == 10, f"{len(blob)} bytes of binary output")
    expect(int(probs.argmax()) == int(s.y[0]), f"argmax {int(probs.argmax())} != {int(s.y[0])}")


# --- the checks, in the order they run -------------------------------------------------------

# (name, check): a check takes the Server, raises CheckFailed (or anything) to fail, and may
# return a detail for its "ok" line. The /metrics checks come after the traffic they count.
CHECKS = [
    ("tritonclient is_server_live", server_live),
    ("tritonclient is_server_live with key header", server_live_with_key),
    ("tritonclient is_server_ready", server_ready),
    ("tritonclient get_server_metadata", server_metadata),
    ("tritonclient is_model_ready digits/sentiment", model_ready),
    ("tritonclient get_model_metadata digits", model_metadata_digits),
    ("tritonclient get_model_metadata sentiment version 1", model_metadata_sentiment_v1),
    ("tritonclient infer digits binary in/binary out",
     lambda s: digits_infer(s, True, True, request_id="req-bin-1")),
    ("tritonclient infer digits JSON in/JSON out",
     lambda s: digits_infer(s, False, False, request_id="req-json-1")),
    ("tritonclient infer digits binary in/JSON out", lambda s: digits_infer(s, True, False)),
    ("tritonclient infer digits JSON in/binary out", lambda s: digits_infer(s, False, True)),
    ("tritonclient infer digits version 1 (default outputs)", digits_default_outputs),
    ("tritonclient infer sentiment BYTES binary", lambda s: sentiment_infer(s, True)),
    ("tritonclient infer sentiment BYTES JSON", lambda s: sentiment_infer(s, False)),
    ("tritonclient infer sentiment default outputs", sentiment_default_outputs),
    ("tritonclient infer without API key -> 401", infer_without_key),
    ("tritonclient infer with wrong API key -> 401", infer_with_wrong_key),
    ("tritonclient get_model_metadata without API key -> 401", metadata_without_key),
    ("tritonclient is_model_ready without API key is False", model_ready_without_key),
    ("tritonclient infer unknown model -> 404", infer_unknown_model),
    ("tritonclient get_model_metadata unknown model -> 404", metadata_unknown_model),
    ("tritonclient is_model_ready unknown model is False", model_ready_unknown_model),
    ("tritonclient infer unknown version -> 404", infer_unknown_version),
    ("tritonclient infer wrong shape -> 422", infer_wrong_shape),
    ("requests POST /predict", predict),
    ("requests POST /predict without key -> 401", predict_without_key),
    ("requests v2 JSON infer digits", v2_json_digits),
    ("requests v2 JSON infer digits nested data", v2_json_digits_nested),
    ("requests v2 JSON infer sentiment BYTES", v2_json_sentiment),
    ("requests v2 JSON infer malformed -> 400", v2_json_malformed),
    ("requests v2 health/metadata routes", v2_health_routes),
    ("prometheus_client OpenMetrics parser on GET /metrics", metrics_openmetrics),
    ("prometheus_client text-format parser on GET /metrics", metrics_classic),
]

# Corners of Triton's binary tensor data extension that tritonclient's own API never produces
# (sent as raw bodies with requests); run after CHECKS with --strict.
STRICT_CHECKS = [
    ("strict: output binary_data=false overrides binary_data_output=true", strict_output_override),
    ("strict: raw binary request (Inference-Header-Content-Length: 0)", strict_raw_binary),
]


# --- the runner ------------------------------------------------------------------------------


def run_check(name, check, server):
    """Runs one check and prints its line; True if it passed."""
    try:
        detail = check(server)
    except CheckFailed as e:
        print(f"FAIL {name}: {e}", flush=True)
    except InferenceServerException as e:
        print(
            f"FAIL {name}: InferenceServerException status={e.status()!r} "
            f"message={e.message()!r} debug={e.debug_details()!r}",
            flush=True,
        )
    except Exception as e:  # noqa: BLE001 - any surprise is a failed check, with its trace
        tb = traceback.format_exc().strip().splitlines()
        where = tb[-3].strip() if len(tb) >= 3 else ""
        print(f"FAIL {name}: {type(e).__name__}: {e} ({where})", flush=True)
    else:
        print(f"ok {name}" + (f" ({detail})" if detail else ""), flush=True)
        return True
    return False


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", required=True, help="host:port of inferd (no scheme)")
    ap.add_argument("--key", required=True, help="API key for the X-API-Key header")
    ap.add_argument("--ca", required=True, help="PEM file of the CA that signed the server cert")
    ap.add_argument(
        "--strict",
        action="store_true",
        help="also check corners of Triton's binary tensor data extension that tritonclient's "
        "own API never produces (sent as raw bodies with requests)",
    )
    args = ap.parse_args()
    if "://" in args.url:
        ap.error("--url takes host:port, without a scheme")
    if not os.path.isfile(args.ca):
        ap.error(f"--ca {args.ca}: no such file")

    server = Server(args.url, args.key, args.ca)
    try:
        results = [run_check(name, check, server)
                   for name, check in CHECKS + (STRICT_CHECKS if args.strict else [])]
    finally:
        server.close()
    failed = results.count(False)
    print(f"{len(results) - failed} passed, {failed} failed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
