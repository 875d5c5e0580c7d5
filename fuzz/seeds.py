#!/usr/bin/env python3
"""Writes the seed corpora under fuzz/corpus/<target>/ (committed; rerun after editing).

Sources: hand-written requests in the shapes inferd's clients send (curl, Triton/KServe
clients' binary extension), the fixture tokens of tests/fixtures/jwt, and the config that
`inferd init` writes (src/provision.rs).
"""
import base64
import json
import pathlib
import struct

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
CORPUS = HERE / "corpus"


def write(target, name, data):
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    (d / name).write_bytes(data)


TOKENS = json.loads((ROOT / "tests/fixtures/jwt/tokens.json").read_text())
VALID = next(t["token"] for t in TOKENS if t["name"] == "valid")

# --- http_head --------------------------------------------------------------------------
digits_json = json.dumps({"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32",
                                       "data": [0.0] * 64}]}, separators=(",", ":"))
bin_header = json.dumps({"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32",
                                     "parameters": {"binary_data_size": 256}}],
                         "parameters": {"binary_data_output": True}}, separators=(",", ":"))
heads = {
    "get_ready": "GET /v2/health/ready HTTP/1.1\r\nHost: device.local:8443\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n",
    "predict": 'POST /predict HTTP/1.1\r\nHost: localhost:8443\r\nAuthorization: Bearer inferd_demo.key\r\nContent-Type: application/json\r\nContent-Length: 30\r\n\r\n{"text": "great little board"}',
    "infer_json": f"POST /v2/models/digits/infer HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: {len(digits_json)}\r\nConnection: keep-alive\r\n\r\n{digits_json}",
    "infer_binary": f"POST /v2/models/digits/versions/1/infer HTTP/1.1\r\nHost: a\r\nContent-Type: application/octet-stream\r\nInference-Header-Content-Length: {len(bin_header)}\r\nContent-Length: {len(bin_header) + 256}\r\nExpect: 100-continue\r\n\r\n",
    "http10_keepalive": "GET /v2 HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n",
    "bare_lf": "GET /metrics HTTP/1.1\nHost: a\nAccept: application/openmetrics-text; version=1.0.0\n\n",
    "smuggle_te_cl": "POST /predict HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "cl_list": "POST /predict HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\nContent-Length: 5\r\n\r\nhello",
    "cl_conflict": "PUT /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
    "two_hosts": "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    "token_basic": "POST /token HTTP/1.1\r\nHost: a\r\nAuthorization: Basic Y2FtZXJhLTE6c2VjcmV0\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 29\r\n\r\ngrant_type=client_credentials",
    "cors_preflight": "OPTIONS /v2/models/digits/infer HTTP/1.1\r\nHost: a\r\nOrigin: https://dashboard.local:8443\r\nAccess-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: authorization, content-type\r\n\r\n",
    "bearer_forwarded": f"GET /v2/models/digits HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {VALID}\r\nForwarded: for=192.0.2.60;proto=https\r\nX-Forwarded-For: 203.0.113.7, 10.0.0.1\r\n\r\n",
    "expect_teapot": "POST /predict HTTP/1.1\r\nHost: a\r\nExpect: teapot\r\nContent-Length: 2\r\n\r\n{}",
    "partial": "GET /v2/health/live HTTP/1.1\r\nHost: a\r\n",
}
for name, raw in heads.items():
    write("http_head", name, raw)

# --- body_framing: method, version, max_body, then name:value lines -------------------------
framings = {
    "get": "GET\n1\n4194304\nhost:a",
    "post_length": "POST\n1\n4194304\ncontent-length:42",
    "post_list": "POST\n1\n100\ncontent-length: 5, 5\ncontent-length:5",
    "post_te": "POST\n1\n100\ntransfer-encoding:chunked",
    "te_cl": "PATCH\n1\n100\ncontent-length:1\ntransfer-encoding:gzip, chunked",
    "too_large": "PUT\n0\n10\ncontent-length:11",
    "huge": "POST\n1\n4194304\ncontent-length:100000000000000000000000",
    "zero": "DELETE\n1\n10\ncontent-length:000",
    "nbsp": "POST\n1\n10\ncontent-length:\u00a05",
    "expect": "POST\n1\n10\ncontent-length:5\nexpect:100-continue\nconnection:close",
}
for name, raw in framings.items():
    write("body_framing", name, raw)

# --- chunked: caps byte (bits 0-2 max_body, 3-5 max_trailer), k, k piece sizes, then body ---
# max_body index: 0 0, 1 1, 2 5, 3 16, 4 100, 5 4096, 6 4 MiB, 7 1 GiB;
# max_trailer index: 0 0, 1 1, 2 2, 3 3, 4 16, 5 96, 6 16 KiB, 7 1 MiB.
def chunked(name, body, max_body=6, max_trailer=6, pieces=b""):
    write("chunked", name, bytes([max_body | max_trailer << 3, len(pieces)]) + pieces + body)

chunked("simple", b"5\r\nhello\r\n0\r\n\r\n")
chunked("pipelined", b"5;ext=1\r\nhello\r\nA\r\n, world!!!\r\n0\r\nX-Trailer: t\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", pieces=b"\x03")
chunked("extensions", b'1a ; name = "quoted \\" value" ;flag;n=tok\r\nabcdefghijklmnopqrstuvwxyz\r\n0;last\r\n\r\n', pieces=b"\x01\x07")
chunked("trailers", b"3\r\nabc\r\n0\r\nServer-Timing: total;dur=12\r\nDigest: sha-256=X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=\r\n\r\n", max_trailer=5, pieces=b"\x02\x00\x05")
chunked("split_crlf", b"4\r\nwiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\n\r\n", pieces=b"\x01\x01\x02")
chunked("one_byte_each", b"10\r\n0123456789abcdef\r\n0\r\n\r\n", max_body=3)
chunked("huge_size", b"ffffffffffffffff\r\n")
chunked("too_many_digits", b"0000000000000000005\r\nhello\r\n0\r\n\r\n")
chunked("over_cap", b"65\r\n" + b"x" * 101 + b"\r\n0\r\n\r\n", max_body=4)
chunked("bare_lf_size", b"5\nhello\r\n0\r\n\r\n")
chunked("bare_lf_data", b"5\r\nhello\n0\r\n\r\n")
chunked("bare_lf_end", b"5\r\nhello\r\n0\r\n\n")
chunked("no_colon_trailer", b"0\r\nno colon\r\n\r\n")
chunked("trailer_cap", b"0\r\nX: " + b"t" * 100 + b"\r\n\r\n", max_trailer=5)
chunked("long_size_line", b"1;" + b"e" * 1100 + b"\r\nx\r\n0\r\n\r\n", pieces=b"\xff")
chunked("empty_size", b"\r\n0\r\n\r\n")
chunked("unfinished", b"5\r\nhel", pieces=b"\x02")
chunked("zero_cap_empty", b"0\r\n\r\n", max_body=0, max_trailer=2)

# --- token_form: the body ----------------------------------------------------------------------
def form(name, body):
    write("token_form", name, body)

form("credentials", "grant_type=client_credentials&client_id=camera-1&client_secret=s3cr%20et%21&scope=predict+metrics")
form("basic_only", "grant_type=client_credentials")
form("repeated", "grant_type=client_credentials&grant_type=password&scope=a&scope=b")
form("unknown_params", "grant_type=client_credentials&audience=x&resource=https%3A%2F%2Fa&client_id=c&client_secret=s")
form("empty_pieces", "&&grant_type=client_credentials&&&=&scope&=x&a==b=c&")
form("percent_edge", "client_id=%&client_secret=%4&scope=%zz%41%%41+%2B&grant_type=%C3%A9%FF%fe%E2%82")
form("pairs_32", "&".join(f"p{i}=v" for i in range(31)) + "&scope=last")
form("pairs_33", "&".join(f"p{i}=v" for i in range(32)) + "&scope=last")
form("at_cap", "scope=" + "a" * 4090)
form("over_cap", "scope=" + "a" * 4091)

# --- oip_json: mode byte, then body ---------------------------------------------------------
def oip(name, mode, body):
    write("oip_json", name, bytes([mode]) + body)

oip("digits_json", 0, digits_json.encode())
oip("nested", 0, b'{"id":"r1","inputs":[{"name":"x","shape":[2,2],"datatype":"FP32","data":[[1,2],[3,4.5]]}],"outputs":[{"name":"probabilities"}]}')
oip("sentiment_bytes", 0, json.dumps({"inputs": [{"name": "text", "shape": [2], "datatype": "BYTES",
     "data": ["great little board", "h\u00e9 \\u0000"]}], "outputs": [{"name": "label", "parameters": {"binary_data": True}}]}).encode())
oip("types", 0, b'{"inputs":[{"name":"a","shape":[3],"datatype":"INT64","data":[-1,9223372036854775807,0]},{"name":"b","shape":[1,2],"datatype":"INT32","data":[[2147483647,-2147483648]]},{"name":"c","shape":[2],"datatype":"UINT8","data":[0,255]},{"name":"d","shape":[],"datatype":"BOOL","data":true}]}')
oip("huge_shape", 0, b'{"inputs":[{"name":"x","shape":[4294967296,4294967296,4294967296],"datatype":"FP32","data":[1]}]}')
oip("big_shape", 0, b'{"inputs":[{"name":"x","shape":[1000000000000],"datatype":"BYTES","data":["a"]}]}')
floats = b"".join(struct.pack("<f", i / 64) for i in range(64))
oip("digits_binary", 1, bin_header.encode() + b"\x00" + floats)
bytes_header = b'{"inputs":[{"name":"text","shape":[2],"datatype":"BYTES","parameters":{"binary_data_size":14}},{"name":"x","shape":[2],"datatype":"INT64","parameters":{"binary_data_size":16}}],"outputs":[{"name":"label","parameters":{"binary_data":true}}]}'
bytes_data = struct.pack("<I", 2) + b"hi" + struct.pack("<I", 4) + b"abcd" + struct.pack("<qq", 1, -1)
oip("bytes_binary", 1, bytes_header + b"\x00" + bytes_data)
oip("binary_len", 2, struct.pack("<I", len(bin_header)) + bin_header.encode() + floats)
oip("binary_len_past_end", 2, struct.pack("<I", 100000) + bin_header.encode())
oip("raw_digits", 3, b"\x00" + floats * 2)
oip("raw_bool", 3, b"\x05" + b"\x01\x00" * 4)
oip("raw_bytes_refused", 3, b"\x01" + b"\x02\x00\x00\x00hi")

# --- predict_json -----------------------------------------------------------------------------
write("predict_json", "text", '{"text": "great little board"}')
write("predict_json", "model", '{"text": "meh", "model": "sentiment"}')
write("predict_json", "typed", 'Content-Type: application/json; charset=utf-8\n{"text": "\\u00e9\\ud83d\\ude00"}')
write("predict_json", "problem_json", 'Content-Type: application/problem+json\n{"text": ""}')
write("predict_json", "wrong_type", 'Content-Type: text/plain\n{"text": "x"}')
write("predict_json", "unknown_field", '{"text": "x", "extra": 1}')
write("predict_json", "deep", "[" * 200 + "]" * 200)

# --- token: the fixture tokens ---------------------------------------------------------------------
for t in TOKENS:
    write("token", t["name"], t["token"])

# --- token_mutate: mode byte, then data ------------------------------------------------------------
h, p, s = VALID.split(".")
def unb64(x):
    return base64.urlsafe_b64decode(x + "=" * (-len(x) % 4))
write("token_mutate", "header", b"\x00" + unb64(h))
write("token_mutate", "header_alg_none", b"\x00" + b'{"alg":"none","kid":"2S-CrtHpts3cGZF1dGqSttIbZjF0gZWahjSY4djtKUI","typ":"JWT"}')
write("token_mutate", "payload", b"\x01" + unb64(p))
write("token_mutate", "payload_admin", b"\x01" + json.dumps({"iss": "https://issuer.example", "sub": "device-42", "aud": "inferd-fleet", "iat": 1749999990, "nbf": 1749999990, "exp": 4102444800, "scope": "admin predict"}).encode())
write("token_mutate", "signature", b"\x02" + unb64(s))
write("token_mutate", "overwrite", b"\x03" + struct.pack("<H", 30) + b"Ed25519")

# --- config ----------------------------------------------------------------------------------------
provision = (ROOT / "src/provision.rs").read_text()
start = provision.index('r#"# inferd configuration') + 3
end = provision.index('"#,', start)
init_config = (provision[start:end]
               .replace("{listen}", '"127.0.0.1:8443"')
               .replace("{models}", '"/opt/inferd/models"')
               .replace("{audience}", '"device.local"')
               .replace("{{", "{").replace("}}", "}"))
write("config", "inferd_init", init_config)
write("config", "minimal", 'listen = "127.0.0.1:0"\n[tls]\ncert = "tls/cert.pem"\nkey = "tls/key.pem"\n[models]\ndir = "/opt/models"\n[auth]\napi_keys_file = "keys.toml"\n')
write("config", "env_overrides", init_config + "\n%%\nlimits_max_connections=7\nlisten=0.0.0.0:9\nmodels_enabled=a, b\ncors_allowed_origins=*\nrate_limit_burst=0\ntrusted_proxies=10.0.0.0/8, ::1\n")
write("config", "full", '''listen = "[::1]:8443"
state_dir = "state"
trusted_proxies = ["10.0.0.0/8", "192.0.2.1"]
[tls]
enabled = true
cert = "c.pem"
key = "k.pem"
client_ca = "ca.pem"
client_auth = "required"
client_scopes = ["predict", "metrics"]
[limits]
max_connections = 100000
max_header_bytes = 1048576
max_headers = 1024
max_request_line_bytes = 1
max_body_bytes = 1073741824
header_timeout_ms = 86400000
inference_threads = 256
inference_queue = 0
[models]
dir = "m"
default = "sentiment"
enabled = ["digits", "sentiment"]
[auth]
jwt_keys_dir = "trusted"
issuer = "https://issuer.example"
audience = "inferd-fleet"
leeway_s = 86400
max_token_bytes = 8192
revocations_file = "revocations.toml"
signing_key = "signing.pem"
clients_file = "clients.toml"
token_ttl_s = 1
clock_policy = "trust_system"
[rate_limit]
enabled = true
default = "10/second"
burst = 18446744073709551615
anonymous_per_ip = { rate = "1/hour", burst = 1 }
max_tracked_keys = 1
[rate_limit.keys]
"camera-1" = { rate = "50/second", burst = 100 }
[rate_limit.scopes]
predict = "1000/day"
[rate_limit.clients]
c = "0/minute"
[cors]
allowed_origins = ["https://dashboard.local:8443", "http://[::1]"]
allow_credentials = true
allowed_methods = ["GET", "POST"]
allowed_headers = ["authorization"]
max_age_s = 0
[log]
level = "trace"
access = false
audit = true
''')
write("config", "not_a_table", 'tls = 1\n%%\ntls_cert=x\n')
print("seeds written under", CORPUS)
