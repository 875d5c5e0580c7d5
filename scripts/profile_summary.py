#!/usr/bin/env python3
"""Summarises folded stacks (inferno-collapse-perf output) of an inferd profile: CPU share by
thread, inclusive share by part of the request path, and the top frames by self time.

    scripts/profile_summary.py FILE.folded
"""
import collections
import sys

# A sample counts once per part whose pattern appears anywhere in its stack.
PARTS = {
    "TLS (rustls: records, AEAD)": ("rustls::",),
    "kernel: socket send/recv": ("tcp_sendmsg", "tcp_recvmsg", "sock_recvmsg", "sock_sendmsg"),
    "kernel: scheduling, wake-ups, futex": ("futex", "schedule", "try_to_wake_up"),
    "malloc/free": ("malloc", "_int_free", "__libc_free", "realloc", "cfree"),
    "inference (tract plan run)": ("tract_core::plan",),
    "OIP JSON decode": ("inferd::oip::decode", "serde_json::de"),
    "JSON encode (answer)": ("serde_json::ser", "zmij"),
    "HTTP head parse": ("httparse", "inferd::http::parse"),
    "limiter (governor)": ("governor::", "inferd::limiter"),
    "metrics (prometheus-client)": ("prometheus_client", "inferd::metrics"),
    "auth (API key, JWT)": ("inferd::auth",),
    "clock reads": ("clock_gettime",),
}


def main() -> None:
    total = 0
    leaf, thread, part = collections.Counter(), collections.Counter(), collections.Counter()
    for line in open(sys.argv[1]):
        stack, n = line.rsplit(" ", 1)
        n = int(n)
        total += n
        frames = stack.split(";")
        thread[frames[0].rstrip("0123456789-/")] += n
        leaf[frames[-1]] += n
        for name, patterns in PARTS.items():
            if any(p in stack for p in patterns):
                part[name] += n
    if not total:
        sys.exit("no samples")
    print(f"samples: {total}")
    print("by thread (share of server CPU):")
    for name, n in thread.most_common():
        print(f"{100 * n / total:5.1f}%  {name}")
    print("by part, inclusive (a sample may count in several):")
    for name, n in part.most_common():
        print(f"{100 * n / total:5.1f}%  {name}")
    print("top frames by self time:")
    for name, n in leaf.most_common(20):
        print(f"{100 * n / total:5.1f}%  {name[:140]}")


if __name__ == "__main__":
    main()
