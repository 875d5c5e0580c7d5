#!/usr/bin/env python3
"""Conformance check: drive a running inferd with real, standard Open Inference Protocol clients.

Clients used:
  * tritonclient.http (the official Triton HTTP client; binary tensor extension by default),
  * plain `requests` for /predict and the KServe v2 JSON infer body.

Usage:
  python scripts/oip_clients.py --url 127.0.0.1:PORT --key KEY --ca CA_PEM

Prints one line per check ("ok <name>" or "FAIL <name>: <why>") and a final line
"N passed, M failed"; exits 1 if any check failed (2 on a usage error).

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


class Runner:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def run(self, name, fn):
        try:
            detail = fn()
        except CheckFailed as e:
            self.failed += 1
            print(f"FAIL {name}: {e}", flush=True)
        except InferenceServerException as e:
            self.failed += 1
            print(
                f"FAIL {name}: InferenceServerException status={e.status()!r} "
                f"message={e.message()!r} debug={e.debug_details()!r}",
                flush=True,
            )
        except Exception as e:  # noqa: BLE001 - any surprise is a failed check, with its trace
            self.failed += 1
            tb = traceback.format_exc().strip().splitlines()
            where = tb[-3].strip() if len(tb) >= 3 else ""
            print(f"FAIL {name}: {type(e).__name__}: {e} ({where})", flush=True)
        else:
            self.passed += 1
            print(f"ok {name}" + (f" ({detail})" if detail else ""), flush=True)


def load_digit_cases():
    with open(os.path.join(MODELS, "digits", "cases.json")) as f:
        cases = json.load(f)
    x = np.asarray([c["input"] for c in cases], dtype=np.float32)
    y = np.asarray([c["label"] for c in cases], dtype=np.int64)
    p = np.asarray([c["probabilities"] for c in cases], dtype=np.float32)
    expect(x.shape[1:] == (64,), f"cases.json inputs have shape {x.shape}")
    return x, y, p


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

    ca = args.ca
    auth = {"X-API-Key": args.key}

    def hdr():
        # A fresh dict per call: tritonclient's infer() writes Inference-Header-Content-Length
        # (and compression headers) into the headers dict it is given, so a shared dict would
        # carry a stale binary-extension header into the next request.
        return dict(auth)

    base = f"https://{args.url}"

    # geventhttpclient calls the factory as factory(cafile=<its default bundle>) and the socket is
    # a gevent one, so: a gevent SSLContext that trusts only our CA, whatever cafile it is handed.
    # check_hostname stays on (insecure=False): the certificate must name 127.0.0.1/localhost.
    def ssl_context_factory(*_args, **_kwargs):
        return gevent.ssl.create_default_context(cafile=ca)

    client = httpclient.InferenceServerClient(
        url=args.url,
        ssl=True,
        ssl_context_factory=ssl_context_factory,
        insecure=False,
        connection_timeout=30.0,
        network_timeout=60.0,
    )
    session = requests.Session()

    x, y, p_ref = load_digit_cases()
    r = Runner()

    # ---- health and metadata (tritonclient) -------------------------------------------------
    def live():
        expect(client.is_server_live() is True, "is_server_live() returned False")

    def live_with_key():
        # The health routes are open; a key on them must not hurt either.
        expect(client.is_server_live(headers=hdr()) is True, "is_server_live(headers=key) False")

    def ready():
        expect(client.is_server_ready() is True, "is_server_ready() returned False")

    def server_metadata():
        md = client.get_server_metadata(headers=hdr())
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

    def model_ready():
        expect(client.is_model_ready("digits", headers=hdr()) is True, "digits not ready")
        expect(client.is_model_ready("sentiment", headers=hdr()) is True, "sentiment not ready")
        expect(
            client.is_model_ready("digits", "1", headers=hdr()) is True, "digits v1 not ready"
        )

    def model_metadata():
        md = client.get_model_metadata("digits", headers=hdr())
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

    def model_metadata_version():
        md = client.get_model_metadata("sentiment", model_version="1", headers=hdr())
        expect(md.get("name") == "sentiment", f"name {md.get('name')!r}")
        ins = {t["name"]: t for t in md.get("inputs", [])}
        outs = {t["name"]: t for t in md.get("outputs", [])}
        expect(ins.get("text", {}).get("datatype") == "BYTES", f"inputs {md.get('inputs')!r}")
        expect(outs.get("label", {}).get("datatype") == "BYTES", f"outputs {md.get('outputs')!r}")
        expect(
            outs.get("probabilities", {}).get("datatype") == "FP32",
            f"outputs {md.get('outputs')!r}",
        )

    r.run("tritonclient is_server_live", live)
    r.run("tritonclient is_server_live with key header", live_with_key)
    r.run("tritonclient is_server_ready", ready)
    r.run("tritonclient get_server_metadata", server_metadata)
    r.run("tritonclient is_model_ready digits/sentiment", model_ready)
    r.run("tritonclient get_model_metadata digits", model_metadata)
    r.run("tritonclient get_model_metadata sentiment version 1", model_metadata_version)

    # ---- digits inference (tritonclient) ----------------------------------------------------
    def digits_infer(in_binary, out_binary, request_id="", version=""):
        inp = httpclient.InferInput("input", list(x.shape), "FP32")
        inp.set_data_from_numpy(x, binary_data=in_binary)
        out = httpclient.InferRequestedOutput("probabilities", binary_data=out_binary)
        res = client.infer(
            "digits",
            [inp],
            model_version=version,
            outputs=[out],
            request_id=request_id,
            headers=hdr(),
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
        diff = float(np.abs(probs - p_ref).max())
        expect(diff < 1e-3, f"max |p - cases.json p| = {diff:.2e}")
        return f"{len(x)} cases, argmax == label, max |dp| {diff:.1e}"

    r.run(
        "tritonclient infer digits binary in/binary out",
        lambda: digits_infer(True, True, request_id="req-bin-1"),
    )
    r.run(
        "tritonclient infer digits JSON in/JSON out",
        lambda: digits_infer(False, False, request_id="req-json-1"),
    )
    r.run("tritonclient infer digits binary in/JSON out", lambda: digits_infer(True, False))
    r.run("tritonclient infer digits JSON in/binary out", lambda: digits_infer(False, True))
    def digits_default_outputs():
        # outputs=None: tritonclient sets parameters.binary_data_output = true for all outputs.
        inp = httpclient.InferInput("input", [1, 64], "FP32")
        inp.set_data_from_numpy(x[:1])
        res = client.infer("digits", [inp], model_version="1", headers=hdr())
        meta = res.get_output("probabilities")
        expect(meta is not None, f"no 'probabilities' output in {res.get_response()!r}")
        expect(
            "binary_data_size" in (meta.get("parameters") or {}),
            f"binary_data_output=true but output is {meta!r}",
        )
        probs = res.as_numpy("probabilities")
        expect(probs.shape == (1, 10), f"shape {probs.shape}")
        expect(int(probs.argmax()) == int(y[0]), f"argmax {int(probs.argmax())} != {int(y[0])}")
        resp = res.get_response()
        expect(resp.get("model_version") in (None, "1"), f"model_version {resp.get('model_version')!r}")

    r.run("tritonclient infer digits version 1 (default outputs)", digits_default_outputs)

    # ---- sentiment inference (tritonclient, BYTES) --------------------------------------------
    texts = np.array([POSITIVE, NEGATIVE], dtype=np.object_)

    def sentiment_infer(binary):
        inp = httpclient.InferInput("text", [len(texts)], "BYTES")
        inp.set_data_from_numpy(texts, binary_data=binary)
        outs = [
            httpclient.InferRequestedOutput("label", binary_data=binary),
            httpclient.InferRequestedOutput("probabilities", binary_data=binary),
        ]
        res = client.infer("sentiment", [inp], outputs=outs, headers=hdr())
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
        got = [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in labels]
        expect(got == ["positive", "negative"], f"labels {got!r} for {list(texts)!r}")
        probs = res.as_numpy("probabilities")
        expect(probs is not None and probs.shape == (2, 2), f"probabilities {probs!r}")
        expect(probs.dtype == np.float32, f"dtype {probs.dtype}")
        expect(
            probs[0, 1] > 0.5 and probs[1, 0] > 0.5, f"probabilities disagree with labels {probs}"
        )
        return f"labels {got}, p(pos) {probs[0, 1]:.3f}/{probs[1, 1]:.3f}"

    def sentiment_default_outputs():
        inp = httpclient.InferInput("text", [len(texts)], "BYTES")
        inp.set_data_from_numpy(texts)
        res = client.infer("sentiment", [inp], headers=hdr())
        labels = res.as_numpy("label")
        expect(labels is not None, f"no 'label' output in {res.get_response()!r}")
        got = [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in labels]
        expect(got == ["positive", "negative"], f"labels {got!r}")
        expect(res.as_numpy("probabilities") is not None, "no 'probabilities' output")

    r.run("tritonclient infer sentiment BYTES binary", lambda: sentiment_infer(True))
    r.run("tritonclient infer sentiment BYTES JSON", lambda: sentiment_infer(False))
    r.run("tritonclient infer sentiment default outputs", sentiment_default_outputs)

    # ---- error mapping (tritonclient) -----------------------------------------------------------
    def expect_status(fn, status, what):
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

    def small_digits_input():
        inp = httpclient.InferInput("input", [1, 64], "FP32")
        inp.set_data_from_numpy(x[:1])
        return inp

    r.run(
        "tritonclient infer without API key -> 401",
        lambda: expect_status(
            lambda: client.infer("digits", [small_digits_input()]), "401", "infer without key"
        ),
    )
    r.run(
        "tritonclient infer with wrong API key -> 401",
        lambda: expect_status(
            lambda: client.infer(
                "digits", [small_digits_input()], headers={"X-API-Key": "inferd_" + "0" * 64}
            ),
            "401",
            "infer with wrong key",
        ),
    )
    r.run(
        "tritonclient get_model_metadata without API key -> 401",
        lambda: expect_status(
            lambda: client.get_model_metadata("digits"), "401", "metadata without key"
        ),
    )
    r.run(
        "tritonclient is_model_ready without API key is False",
        lambda: expect(client.is_model_ready("digits") is False, "ready without a key"),
    )
    r.run(
        "tritonclient infer unknown model -> 404",
        lambda: expect_status(
            lambda: client.infer("no-such-model", [small_digits_input()], headers=hdr()),
            "404",
            "infer unknown model",
        ),
    )
    r.run(
        "tritonclient get_model_metadata unknown model -> 404",
        lambda: expect_status(
            lambda: client.get_model_metadata("no-such-model", headers=hdr()),
            "404",
            "metadata unknown model",
        ),
    )
    r.run(
        "tritonclient is_model_ready unknown model is False",
        lambda: expect(
            client.is_model_ready("no-such-model", headers=hdr()) is False, "unknown model ready"
        ),
    )
    r.run(
        "tritonclient infer unknown version -> 404",
        lambda: expect_status(
            lambda: client.infer(
                "digits", [small_digits_input()], model_version="999", headers=hdr()
            ),
            "404",
            "infer unknown version",
        ),
    )

    def wrong_shape():
        inp = httpclient.InferInput("input", [1, 63], "FP32")
        inp.set_data_from_numpy(x[:1, :63])
        return expect_status(
            lambda: client.infer("digits", [inp], headers=hdr()), "422", "infer wrong shape"
        )

    r.run("tritonclient infer wrong shape -> 422", wrong_shape)

    # ---- plain requests ---------------------------------------------------------------------
    def req_json(method, path, **kw):
        # verify= per request: a session-level verify loses to REQUESTS_CA_BUNDLE in the env.
        resp = session.request(method, base + path, timeout=60, verify=ca, **kw)
        return resp

    def predict():
        out = {}
        for text, want in ((POSITIVE, "positive"), (NEGATIVE, "negative")):
            resp = req_json("POST", "/predict", json={"text": text}, headers=hdr())
            expect(resp.status_code == 200, f"HTTP {resp.status_code}: {resp.text[:300]}")
            body = resp.json()
            for k in ("prediction", "score", "scores", "model", "model_version"):
                expect(k in body, f"/predict response lacks {k!r}: {body!r}")
            expect(body["prediction"] == want, f"prediction {body['prediction']!r} for {text!r}")
            expect(body["model"] == "sentiment", f"model {body['model']!r}")
            out[want] = body["score"]
        return ", ".join(f"{k} {v:.3f}" for k, v in out.items())

    def predict_no_key():
        resp = req_json("POST", "/predict", json={"text": POSITIVE})
        expect(resp.status_code == 401, f"HTTP {resp.status_code}: {resp.text[:300]}")
        expect("error" in resp.json(), f"401 body {resp.text[:300]!r}")
        expect("WWW-Authenticate" in resp.headers, f"401 without WWW-Authenticate: {resp.headers}")

    def v2_json_digits():
        body = {
            "id": "requests-1",
            "inputs": [
                {"name": "input", "shape": [len(x), 64], "datatype": "FP32",
                 "data": x.reshape(-1).tolist()}
            ],
            "outputs": [{"name": "probabilities"}],
        }
        resp = req_json("POST", "/v2/models/digits/infer", json=body, headers=hdr())
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
        expect(
            (probs.argmax(axis=1) == y).all(), f"argmax {probs.argmax(axis=1)} != labels {y}"
        )
        return f"{len(x)} cases"

    def v2_json_digits_nested():
        # KServe v2 allows tensor data row-major flattened or nested as the shape.
        body = {
            "inputs": [
                {"name": "input", "shape": [2, 64], "datatype": "FP32", "data": x[:2].tolist()}
            ]
        }
        resp = req_json("POST", "/v2/models/digits/infer", json=body, headers=hdr())
        expect(resp.status_code == 200, f"HTTP {resp.status_code}: {resp.text[:300]}")
        outs = {o["name"]: o for o in resp.json().get("outputs", [])}
        o = outs.get("probabilities")
        expect(o is not None, f"outputs {resp.text[:300]}")
        probs = np.asarray(o["data"], dtype=np.float32).reshape(2, 10)
        expect((probs.argmax(axis=1) == y[:2]).all(), f"argmax {probs.argmax(axis=1)}")

    def v2_json_sentiment():
        body = {
            "inputs": [
                {"name": "text", "shape": [2], "datatype": "BYTES", "data": [POSITIVE, NEGATIVE]}
            ]
        }
        resp = req_json("POST", "/v2/models/sentiment/infer", json=body, headers=hdr())
        expect(resp.status_code == 200, f"HTTP {resp.status_code}: {resp.text[:300]}")
        outs = {o["name"]: o for o in resp.json().get("outputs", [])}
        lab = outs.get("label")
        expect(lab is not None, f"outputs {resp.text[:300]}")
        expect(lab.get("datatype") == "BYTES" and lab.get("shape") == [2], f"label {lab!r}")
        expect(lab.get("data") == ["positive", "negative"], f"labels {lab.get('data')!r}")
        pr = outs.get("probabilities")
        expect(pr is not None and pr.get("shape") == [2, 2], f"probabilities {pr!r}")

    def v2_json_malformed():
        resp = req_json(
            "POST", "/v2/models/digits/infer", data=b'{"inputs": [', headers={**auth, "Content-Type": "application/json"},
        )
        expect(resp.status_code == 400, f"HTTP {resp.status_code}: {resp.text[:300]}")
        expect(isinstance(resp.json().get("error"), str), f"body {resp.text[:300]!r}")

    def v2_health_requests():
        for path in ("/v2/health/live", "/v2/health/ready", "/v2/models/digits/ready"):
            resp = req_json("GET", path, headers=hdr())
            expect(resp.status_code == 200, f"GET {path}: HTTP {resp.status_code}")
        resp = req_json("GET", "/v2")
        expect(resp.status_code == 200, f"GET /v2: HTTP {resp.status_code}")
        expect(resp.json().get("name"), f"GET /v2 body {resp.text[:200]!r}")

    r.run("requests POST /predict", predict)
    r.run("requests POST /predict without key -> 401", predict_no_key)
    r.run("requests v2 JSON infer digits", v2_json_digits)
    r.run("requests v2 JSON infer digits nested data", v2_json_digits_nested)
    r.run("requests v2 JSON infer sentiment BYTES", v2_json_sentiment)
    r.run("requests v2 JSON infer malformed -> 400", v2_json_malformed)
    r.run("requests v2 health/metadata routes", v2_health_requests)

    # ---- --strict: binary-extension corners tritonclient's API never sends --------------------
    def binary_body(header, blob):
        head = json.dumps(header).encode()
        return head + blob, {**auth, "Inference-Header-Content-Length": str(len(head))}

    def split_binary(resp):
        n = resp.headers.get("Inference-Header-Content-Length")
        if n is None:
            return resp.json(), b""
        return json.loads(resp.content[: int(n)]), resp.content[int(n):]

    def strict_output_override():
        # Spec: binary_data_output "... If "binary_data" is specified on an output it overrides
        # this setting."  So binary_data=false on an output wins over binary_data_output=true.
        body, headers = binary_body(
            {
                "parameters": {"binary_data_output": True},
                "inputs": [
                    {"name": "input", "shape": [2, 64], "datatype": "FP32",
                     "parameters": {"binary_data_size": x[:2].nbytes}}
                ],
                "outputs": [{"name": "probabilities", "parameters": {"binary_data": False}}],
            },
            x[:2].tobytes(),
        )
        resp = req_json("POST", "/v2/models/digits/infer", data=body, headers=headers)
        expect(resp.status_code == 200, f"HTTP {resp.status_code}: {resp.text[:300]}")
        head, _ = split_binary(resp)
        o = {t["name"]: t for t in head.get("outputs", [])}.get("probabilities") or {}
        expect(
            "data" in o and "binary_data_size" not in (o.get("parameters") or {}),
            "request parameters.binary_data_output=true with outputs[probabilities]."
            "parameters.binary_data=false: the output must come back as JSON data (the "
            f"output-level flag overrides), got {json.dumps(o)[:200]}",
        )

    def strict_raw_binary():
        # Spec "Raw Binary Request": Inference-Header-Content-Length: 0, body = the one input's
        # bytes; a model with one input and at most one variable dim takes it as batch 1, and
        # every output comes back in binary.
        resp = req_json(
            "POST",
            "/v2/models/digits/infer",
            data=x[:1].tobytes(),
            headers={**auth, "Inference-Header-Content-Length": "0",
                     "Content-Type": "application/octet-stream"},
        )
        expect(resp.status_code == 200, f"HTTP {resp.status_code}: {resp.text[:300]}")
        head, blob = split_binary(resp)
        o = {t["name"]: t for t in head.get("outputs", [])}.get("probabilities") or {}
        expect(o.get("shape") == [1, 10], f"output {o!r}")
        probs = np.frombuffer(blob, dtype="<f4")
        expect(probs.size == 10, f"{len(blob)} bytes of binary output")
        expect(int(probs.argmax()) == int(y[0]), f"argmax {int(probs.argmax())} != {int(y[0])}")

    # ---- /metrics through the Prometheus project's own Python parsers (after the traffic above)
    def metrics_families(accept, parse):
        resp = req_json("GET", "/metrics", headers={**auth, "Accept": accept})
        expect(resp.status_code == 200, f"HTTP {resp.status_code}: {resp.text[:300]}")
        return resp.headers.get("Content-Type", ""), {f.name: f for f in parse(resp.text)}

    def check_families(families):
        requests_family = families.get("inferd_requests") or families.get("inferd_requests_total")
        expect(requests_family is not None and requests_family.type == "counter",
               f"no counter family inferd_requests: {sorted(families)}")
        infer_ok = [s for s in requests_family.samples
                    if s.labels.get("route") == "/v2/models/infer" and s.labels.get("status") == "200"]
        expect(infer_ok and infer_ok[0].value > 0, "inferd_requests_total lacks the infers made")
        hist = families.get("inferd_inference_duration_seconds")
        expect(hist is not None and hist.type == "histogram", "no inference duration histogram")
        models = {s.labels.get("model") for s in hist.samples}
        expect({"digits", "sentiment"} <= models, f"inference series for {models}")
        buckets = {s.labels.get("bucket") for s in hist.samples if s.labels.get("model") == "sentiment"}
        expect(buckets - {None, "-"}, f"sentiment inference has no length-bucket label: {buckets}")

    def metrics_openmetrics():
        ctype, families = metrics_families(
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
            parse_openmetrics)
        expect(ctype.startswith("application/openmetrics-text"), f"Content-Type {ctype}")
        check_families(families)

    def metrics_classic():
        ctype, families = metrics_families("text/plain", parse_prometheus)
        expect(ctype.startswith("text/plain; version=0.0.4"), f"Content-Type {ctype}")
        check_families(families)
        untyped = [n for n, f in families.items() if f.type == "unknown"]
        expect(not untyped, f"families the classic parser could not type: {untyped}")

    r.run("prometheus_client OpenMetrics parser on GET /metrics", metrics_openmetrics)
    r.run("prometheus_client text-format parser on GET /metrics", metrics_classic)

    if args.strict:
        r.run("strict: output binary_data=false overrides binary_data_output=true",
              strict_output_override)
        r.run("strict: raw binary request (Inference-Header-Content-Length: 0)",
              strict_raw_binary)

    client.close()
    session.close()
    print(f"{r.passed} passed, {r.failed} failed", flush=True)
    return 1 if r.failed else 0


if __name__ == "__main__":
    sys.exit(main())
