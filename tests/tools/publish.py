#!/usr/bin/env python3
"""Publishes NDJSON lines as Pub/Sub messages (REST, 1,000 per request) to the emulator or any
Pub/Sub endpoint without auth.

  tests/tools/publish.py --endpoint http://127.0.0.1:PORT --topic projects/P/topics/T FILE|-
    [--rate N]  messages per second (default: as fast as it goes)
    [--attr k=v] attribute on every message
    [--stamp]   add attribute sent_at=<epoch seconds> (latency measurements)
Prints the number of messages published."""
import argparse
import base64
import http.client
import json
import sys
import time
import urllib.parse


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--rate", type=float, default=0)
    ap.add_argument("--attr", action="append", default=[])
    ap.add_argument("--stamp", action="store_true")
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--token", help="bearer token (an emulator run with --auth)")
    ap.add_argument("file")
    a = ap.parse_args()
    u = urllib.parse.urlparse(a.endpoint)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    attrs = dict(kv.split("=", 1) for kv in a.attr)
    path = f"/v1/{a.topic}:publish"
    src = sys.stdin.buffer if a.file == "-" else open(a.file, "rb")
    sent, batch, t0 = 0, [], time.time()

    def flush():
        nonlocal sent, batch
        if not batch:
            return
        body = json.dumps({"messages": batch})
        for attempt in range(10):
            try:
                hdrs = {"Content-Type": "application/json"}
                if a.token:
                    hdrs["Authorization"] = "Bearer " + a.token
                conn.request("POST", path, body, hdrs)
                r = conn.getresponse()
                data = r.read()
                if r.status == 200:
                    break
                if r.status < 500 and r.status != 429:
                    sys.exit(f"publish: HTTP {r.status}: {data[:300]!r}")
            except (OSError, http.client.HTTPException):
                conn.close()
            time.sleep(0.2 * (attempt + 1))
        else:
            sys.exit("publish: giving up after 10 attempts")
        sent += len(batch)
        batch = []

    for line in src:
        line = line.rstrip(b"\r\n")
        if not line.strip():
            continue
        at = dict(attrs)
        if a.stamp:
            at["sent_at"] = "%.6f" % time.time()
        m = {"data": base64.b64encode(line).decode()}
        if at:
            m["attributes"] = at
        batch.append(m)
        if len(batch) >= a.batch:
            flush()
        if a.rate:
            due = t0 + (sent + len(batch)) / a.rate
            if due > time.time():
                flush()
                time.sleep(max(0, due - time.time()))
    flush()
    print(sent)


if __name__ == "__main__":
    main()
