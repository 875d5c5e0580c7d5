#!/usr/bin/env python3
"""Soak load for inferd: N keep-alive TLS connections for a fixed time over a mix of routes,
with auth failures and rate-limit hits, counting every answer against what that request may
get. Python standard library only; traffic to 127.0.0.1 only; bounded in time.

Each connection plays one role (its X-Forwarded-For names a distinct client; the server
trusts 127.0.0.1 as a proxy, so per-address limits apply per role instance):
  digits    POST /v2/models/digits/infer, admin key        -> 200 (503 if the queue is full)
  predict   POST /predict (sentiment, short text), admin   -> 200 (503 if the queue is full)
  meta      GET /v2/models/digits, /v2/health/ready, /openapi.json, /metrics -> 200
  limited   GET /v2/models/digits with a key capped at 5/second -> 200 or 429
  attacker  GET /v2/models/digits with wrong keys           -> 401, then 429 once barred
Anything else (another status, a reset, a timeout) is unexpected. Prints a table and
'N passed, N failed' (requests as expected / unexpected); exits 1 on any unexpected answer.
"""

import argparse
import asyncio
import json
import ssl
import sys
import time

DIGIT = json.dumps({"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32",
                                "data": [0, 0, 5, 13, 9, 1, 0, 0, 0, 0, 13, 15, 10, 15, 5, 0,
                                         0, 3, 15, 2, 0, 11, 8, 0, 0, 4, 12, 0, 0, 8, 8, 0,
                                         0, 5, 8, 0, 0, 9, 8, 0, 0, 4, 11, 0, 1, 12, 7, 0,
                                         0, 2, 14, 5, 10, 12, 0, 0, 0, 0, 6, 13, 10, 0, 0, 0]}]})
TEXT = json.dumps({"text": "the battery lasts all day and the screen is lovely"})

ROLES = {
    # role: (share of connections, expected statuses)
    "digits": (0.40, {200, 503}),
    "predict": (0.10, {200, 503}),
    "meta": (0.20, {200}),
    "limited": (0.15, {200, 429}),
    "attacker": (0.15, {401, 429}),
}


def requests_for(role, admin, limited, i):
    """The cycle of (method, path, headers, body) a connection of this role repeats."""
    json_h = {"Content-Type": "application/json"}
    if role == "digits":
        return [("POST", "/v2/models/digits/infer", {"X-API-Key": admin, **json_h}, DIGIT)]
    if role == "predict":
        return [("POST", "/predict", {"X-API-Key": admin, **json_h}, TEXT)]
    if role == "meta":
        return [("GET", p, {"X-API-Key": admin}, "") for p in
                ("/v2/models/digits", "/v2/health/ready", "/openapi.json", "/metrics")]
    if role == "limited":
        return [("GET", "/v2/models/digits", {"X-API-Key": limited}, "")]
    return [("GET", "/v2/models/digits", {"X-API-Key": f"inferd_{i:064x}"}, "")]


async def read_response(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    length = 0
    close = False
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value.strip())
        elif name == "connection" and value.strip().lower() == "close":
            close = True
    if length:
        await reader.readexactly(length)
    return status, close


async def connection(n, role, args, ctx, deadline, tally):
    cycle = requests_for(role, args.key, args.limited_key, n)
    client = f"198.18.{n // 250}.{n % 250 + 1}"   # only ever a header value, never dialled
    reader = writer = None
    k = 0
    while time.monotonic() < deadline:
        try:
            if writer is None:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection("127.0.0.1", args.port, ssl=ctx,
                                            server_hostname="localhost"), 10)
            method, path, headers, body = cycle[k % len(cycle)]
            k += 1
            data = body.encode()
            head = [f"{method} {path} HTTP/1.1", "Host: localhost",
                    f"X-Forwarded-For: {client}"]
            head += [f"{h}: {v}" for h, v in headers.items()]
            if method == "POST":
                head.append(f"Content-Length: {len(data)}")
            writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + data)
            await writer.drain()
            status, close = await asyncio.wait_for(read_response(reader), 30)
            key = (role, status)
            tally[key] = tally.get(key, 0) + 1
            if close:
                writer.close()
                reader = writer = None
            if status in (429, 503):
                await asyncio.sleep(0.05)   # a polite client backs off a little
        except Exception as e:  # noqa: BLE001 - every failure is counted, then reconnect
            key = (role, f"error:{type(e).__name__}")
            tally[key] = tally.get(key, 0) + 1
            if writer is not None:
                writer.close()
            reader = writer = None
            await asyncio.sleep(0.1)
    if writer is not None:
        writer.close()


async def main_async(args):
    ctx = ssl.create_default_context(cafile=args.ca)
    deadline = time.monotonic() + args.duration
    tally = {}
    roles = []
    for role, (share, _) in ROLES.items():
        roles += [role] * max(1, round(share * args.connections))
    roles = roles[:args.connections]
    await asyncio.gather(*(connection(n, role, args, ctx, deadline, tally)
                           for n, role in enumerate(roles)))
    return tally


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--key", required=True, help="admin API key")
    ap.add_argument("--limited-key", required=True, help="API key with a low quota override")
    ap.add_argument("--ca", required=True)
    ap.add_argument("--duration", type=float, default=600)
    ap.add_argument("--connections", type=int, default=64)
    args = ap.parse_args()
    started = time.monotonic()
    tally = asyncio.run(main_async(args))
    took = time.monotonic() - started
    ok = bad = 0
    print(f"{'role':10} {'answer':>18} {'count':>9}")
    for (role, status), count in sorted(tally.items(), key=lambda kv: (kv[0][0], str(kv[0][1]))):
        expected = status in ROLES[role][1]
        ok += count if expected else 0
        bad += 0 if expected else count
        print(f"{role:10} {str(status):>18} {count:9d}{'' if expected else '  UNEXPECTED'}")
    print(f"{ok + bad} requests in {took:.0f} s ({(ok + bad) / took:.0f}/s)")
    print(f"{ok} passed, {bad} failed")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
