#!/usr/bin/env python3
"""Real-browser CORS check of inferd (driven by scripts/cors_browser.sh).

Binds two page servers (origins A and B, ports of the kernel's choosing), provisions and
starts inferd through scripts/lib/inferd_harness.py with INFERD_CORS_ALLOWED_ORIGINS =
origin A, runs the checks below, stops inferd with SIGTERM and requires it to exit 0.

What it proves, with headless Chromium:

  direct (stdlib HTTPS, verified against the init CA):
    1. a preflight OPTIONS /predict from origin A gets 204 with Access-Control-Allow-Origin
       = origin A, Allow-Methods containing POST, Allow-Headers containing x-api-key, a
       numeric Max-Age, and Vary containing Origin;
    2. the same preflight from origin B gets no Access-Control-* header at all, but still
       Vary: Origin (so caches keep the two answers apart);
  in the browser (a page served from each origin calls fetch() with X-API-Key and a JSON
  body, which forces a preflight):
    3. origin A: the call succeeds, 200 with a JSON body holding "prediction";
    4. origin A: the page can read the RateLimit response header (Expose-Headers works);
    5. origin B: the browser blocks the call (fetch rejects with TypeError);
  in inferd's access log (its stderr):
    6. while A's page ran: an OPTIONS /predict 204 preflight, then one POST /predict 200;
    7. while B's page ran: the OPTIONS preflight reached inferd (so the block is CORS, not
       TLS or the network) but no POST /predict did;
    8. exactly one POST /predict line in the whole log.

Each page reports what it saw by POSTing JSON to /result on its own page server (same
origin, so no CORS involved); the driver waits for that (bounded) and then stops Chromium.
The two pages run one after the other, each in a fresh Chromium profile, so the access-log
lines written while a page ran belong to that page.

Only the Python 3 standard library. Exits 0 only if every check passes and inferd stopped
cleanly.
"""

import argparse
import http.client
import http.server
import json
import os
import re
import signal
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "lib"))
import inferd_harness as harness  # noqa: E402 (scripts/lib is not a package)

PAGE_TEMPLATE = Path(__file__).resolve().parent / "cors_browser" / "page.html"
PREDICT_TEXT = "what a wonderful day"

# One access line per request: "[... INFO  inferd::access] POST /predict 200 812us peer=.. principal=.."
ACCESS_RE = re.compile(r"inferd::access\S*\s+(\S+)\s+(\S+)\s+(\d{3})\s")


# --- page servers ---------------------------------------------------------------------------


class PageServer:
    """Serves the probe page on 127.0.0.1 (a port of the kernel's choosing) and records the
    page's POST /result. Bound at once, so its origin is known before inferd starts; the page
    itself (which names inferd's URL) is set with `set_page` once inferd is up."""

    def __init__(self, name, log_path):
        self.name = name
        self.page = None
        self.result = None
        self.got_result = threading.Event()
        log = open(log_path, "a", buffering=1)
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, fmt, *args):
                log.write("%s %s\n" % (time.strftime("%H:%M:%S"), fmt % args))

            def _send(self, code, body=b"", ctype="text/plain"):
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                if self.path.split("?")[0] in ("/", "/index.html") and owner.page:
                    self._send(200, owner.page, "text/html; charset=utf-8")
                else:  # favicon.ico and anything else
                    self._send(404)

            def do_POST(self):
                if self.path != "/result":
                    return self._send(404)
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                try:
                    data = json.loads(raw)
                except ValueError:
                    data = {"outcome": "bad-report", "raw": raw.decode("utf-8", "replace")}
                log.write("result: %s\n" % json.dumps(data))
                if owner.result is None:
                    owner.result = data
                owner.got_result.set()
                self._send(204)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.origin = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def set_page(self, page_config):
        self.page = PAGE_TEMPLATE.read_text().replace("__CONFIG__", json.dumps(page_config)).encode()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


# --- chromium -------------------------------------------------------------------------------


def run_page(chromium, page, work, timeout):
    """Opens page.origin in a fresh headless Chromium; returns the page's report or None."""
    profile = work / f"chromium-profile-{page.name}"
    profile.mkdir(parents=True, exist_ok=True)
    cmd = [
        chromium,
        "--headless=new",
        "--no-sandbox",  # root in a container: no user namespaces for the sandbox
        "--disable-gpu",
        "--disable-dev-shm-usage",  # small /dev/shm in containers
        "--ignore-certificate-errors",  # inferd's self-signed certificate from `inferd init`
        "--no-proxy-server",  # loopback only
        f"--user-data-dir={profile}",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-extensions",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-default-apps",
        "--mute-audio",
        page.origin + "/",
    ]
    with open(work / f"chromium-{page.name}.log", "w") as log:
        # Own process group, so the browser and all its helpers stop together.
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
        )
        try:
            deadline = time.monotonic() + timeout
            while not page.got_result.wait(0.2):
                if proc.poll() is not None:
                    break  # browser died; whatever it reported (nothing) is the answer
                if time.monotonic() >= deadline:
                    break
        finally:
            stop_group(proc)
    return page.result


def stop_group(proc):
    for sig, grace in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            continue
        # The leader is gone; helpers left in the group get the next signal.
    proc.poll()


# --- direct HTTP ----------------------------------------------------------------------------


def preflight(host, port, ca, origin):
    """OPTIONS /predict as a browser would send it for the probe's fetch(); (status, headers)."""
    ctx = ssl.create_default_context(cafile=ca)
    conn = http.client.HTTPSConnection(host, port, context=ctx, timeout=10)
    try:
        conn.request(
            "OPTIONS",
            "/predict",
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "x-api-key,content-type",
            },
        )
        r = conn.getresponse()
        r.read()
        return r.status, r.msg
    finally:
        conn.close()


def tokens(msg, name):
    """Comma-separated tokens of every `name` header line, lower-cased."""
    out = []
    for value in msg.get_all(name) or []:
        out += [t.strip().lower() for t in value.split(",") if t.strip()]
    return out


def show_headers(status, msg):
    return f"status {status}; " + "; ".join(f"{k}: {v}" for k, v in msg.items())


# --- access log -----------------------------------------------------------------------------


def access_lines(log_path):
    """[(method, path, status)] for every access line so far."""
    out = []
    with open(log_path, errors="replace") as f:
        for line in f:
            m = ACCESS_RE.search(line)
            if m:
                out.append((m.group(1), m.group(2).split("?")[0], int(m.group(3))))
    return out


def count(lines, method, path="/predict", status=None):
    return sum(
        1 for m, p, s in lines if m == method and p == path and (status is None or s == status)
    )


# --- the checks -----------------------------------------------------------------------------


def preflight_checks(server, ca, origin_a, origin_b, check):
    """Checks 1-2: the preflights as a browser would send them, straight to inferd."""
    status, h = preflight(server.host, server.port, ca, origin_a)
    problems = []
    if status != 204:
        problems.append(f"status {status} (want 204)")
    if h.get("Access-Control-Allow-Origin") != origin_a:
        problems.append(f"Allow-Origin {h.get('Access-Control-Allow-Origin')!r} (want {origin_a!r})")
    if "post" not in tokens(h, "Access-Control-Allow-Methods"):
        problems.append("Allow-Methods lacks POST")
    if "x-api-key" not in tokens(h, "Access-Control-Allow-Headers"):
        problems.append("Allow-Headers lacks x-api-key")
    if not (h.get("Access-Control-Max-Age") or "").strip().isdigit():
        problems.append(f"Max-Age {h.get('Access-Control-Max-Age')!r} (want a number)")
    if "origin" not in tokens(h, "Vary"):
        problems.append("Vary lacks Origin")
    check_problems(check, problems, "direct preflight from origin A allowed", status, h,
                   "204; " + "; ".join(f"{k}: {v}" for k, v in h.items()
                                       if k.lower().startswith("access-control-") or k.lower() == "vary"))

    status, h = preflight(server.host, server.port, ca, origin_b)
    acx = [k for k in h.keys() if k.lower().startswith("access-control-")]
    problems = []
    if acx:
        problems.append("Access-Control-* headers present: " + ", ".join(acx))
    if "origin" not in tokens(h, "Vary"):
        problems.append("Vary lacks Origin")
    check_problems(check, problems, "direct preflight from origin B gets no CORS headers", status, h,
                   f"status {status}, no Access-Control-*, Vary: {', '.join(h.get_all('Vary') or [])}")


def check_problems(check, problems, name, status, headers, fine):
    """One check that passes when `problems` is empty; its detail is `fine` or what went wrong."""
    check(not problems, name,
          "; ".join(problems) + " -- got " + show_headers(status, headers) if problems else fine)


def browser_checks(args, server, key, page_a, page_b, check):
    """Checks 3-8: each page in a fresh Chromium, one after the other, and what reached inferd
    (the access-log position is noted around each page)."""
    work = Path(args.work)
    config = {"url": server.url, "key": key, "text": PREDICT_TEXT,
              "fetch_timeout_ms": int(args.timeout * 1000 * 2 / 3)}
    page_a.set_page(config)
    page_b.set_page(config)
    mark0 = len(access_lines(server.log))
    started = time.monotonic()
    res_a = run_page(args.chromium, page_a, work, args.timeout)
    secs_a = time.monotonic() - started
    mark1 = len(access_lines(server.log))
    started = time.monotonic()
    res_b = run_page(args.chromium, page_b, work, args.timeout)
    secs_b = time.monotonic() - started
    time.sleep(0.5)  # let a (wrongly) sent request from B show up in the log
    lines = access_lines(server.log)
    during_a, during_b = lines[mark0:mark1], lines[mark1:]

    # 3-5. What the pages saw.
    if res_a is None:
        check(False, "browser A: preflighted POST /predict succeeds",
              f"no report from the page within {args.timeout:.0f}s (see chromium-A.log)")
        check(False, "browser A: RateLimit header readable", "no report")
    else:
        body = res_a.get("body")
        ok = (res_a.get("outcome") == "response" and res_a.get("status") == 200
              and isinstance(body, dict) and "prediction" in body)
        check(ok, "browser A: preflighted POST /predict succeeds",
              f"200, prediction {body['prediction']!r} ({secs_a:.1f}s)" if ok
              else "page saw " + json.dumps(res_a))
        check(res_a.get("ratelimit"), "browser A: RateLimit header readable",
              f"RateLimit: {res_a.get('ratelimit')}" if res_a.get("ratelimit")
              else "headers visible to the page: " + json.dumps(res_a.get("visible_headers")))
    if res_b is None:
        check(False, "browser B: call blocked by the browser",
              f"no report from the page within {args.timeout:.0f}s (see chromium-B.log)")
    else:
        check(res_b.get("outcome") == "blocked", "browser B: call blocked by the browser",
              f"{res_b.get('error')} ({secs_b:.1f}s)" if res_b.get("outcome") == "blocked"
              else "page saw " + json.dumps(res_b))

    # 6-8. What reached the server.
    opt_a, post_a = count(during_a, "OPTIONS", status=204), count(during_a, "POST", status=200)
    first_opt = next((i for i, l in enumerate(during_a) if l[0] == "OPTIONS"), None)
    first_post = next((i for i, l in enumerate(during_a) if l[0] == "POST"), None)
    ok = (opt_a >= 1 and post_a == 1 and count(during_a, "POST") == 1
          and first_opt is not None and first_opt < first_post)
    check(ok, "server: A sent preflight OPTIONS 204, then POST /predict 200",
          f"access lines while A ran: {during_a}")
    # B's preflight must arrive (else "blocked" could be a TLS or network failure), its POST not.
    check(count(during_b, "OPTIONS") >= 1 and count(during_b, "POST") == 0,
          "server: B's preflight reached inferd, its POST did not",
          f"access lines while B ran: {during_b}")
    total_posts = count(lines, "POST")
    check(total_posts == 1, "server: exactly one POST /predict in the log",
          f"{total_posts} POST /predict line(s)")



# --- main -----------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--inferd", required=True, help="the inferd binary")
    ap.add_argument("--work", required=True, help="folder for inferd's state, logs and profiles")
    ap.add_argument("--chromium", default="chromium")
    ap.add_argument("--timeout", type=float, default=30, help="seconds per page")
    args = ap.parse_args()

    # SIGTERM (from the wrapper's trap) unwinds through the finally blocks: no stray browser,
    # no stray server.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    checks = []  # (ok, name, detail)

    def check(ok, name, detail=""):
        checks.append((bool(ok), name, detail))

    # The page servers bind first: inferd starts knowing origin A, and no port is picked and
    # released on the way.
    page_a = PageServer("A", work / "pages.log")
    page_b = PageServer("B", work / "pages.log")
    try:
        state = harness.provision(args.inferd, work)
        with harness.start(state, work / "serve.log",
                           {"INFERD_CORS_ALLOWED_ORIGINS": page_a.origin,
                            "INFERD_RATE_LIMIT_DEFAULT": "100000/minute"}) as server:
            print(f"cors_browser.py: inferd (pid {server.proc.pid}) ready on {server.url}, "
                  f"CORS origin {page_a.origin}", flush=True)
            preflight_checks(server, str(state.ca_cert), page_a.origin, page_b.origin, check)
            browser_checks(args, server, state.api_key, page_a, page_b, check)
            failed = report(checks, page_a.origin, page_b.origin, server.url)
            server.stop()
            print("cors_browser.py: inferd exited 0 after SIGTERM")
    except harness.HarnessError as e:
        print(f"cors_browser.py: {e}", file=sys.stderr)
        return 1
    finally:
        page_a.close()
        page_b.close()
    return 1 if failed else 0


def report(checks, origin_a, origin_b, url):
    """Prints every check; returns how many failed."""
    print(f"cors_browser.py: origin A {origin_a} (allowed), origin B {origin_b}, inferd {url}")
    for ok, name, detail in checks:
        print(f"  {'PASS' if ok else 'FAIL'}  {name}" + (f"  [{detail}]" if detail else ""))
    failed = sum(1 for ok, _, _ in checks if not ok)
    print(f"cors_browser.py: {len(checks) - failed}/{len(checks)} checks passed", flush=True)
    return failed


if __name__ == "__main__":
    sys.exit(main())
