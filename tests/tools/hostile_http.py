#!/usr/bin/env python3
"""A scripted, hostile HTTP/1.1 server for tests (Python stdlib only), on 127.0.0.1.

    tests/tools/hostile_http.py [--port N] [--routes JSON_OR_@FILE]

Prints `listening on http://127.0.0.1:PORT` as its first line, then serves until killed, or
until the process that started it is gone (however that ended: a test aborted before its
teardown must not leave a server behind).
Each request (any method) is answered by the route whose key matches its path (the query is
left out): an exact path, or a key ending in `*` as a prefix (the longest key wins). A route is
one action, or a list of actions used in turn (the last one repeats). Actions:

    {"status": 404, "body": "text", "headers": {"K": "V"}}   answer (defaults: 200, "{}")
    {"redirect": "http://elsewhere/x", "status": 302}        3xx with Location
    {"hang": true}              read the request, never answer (the connection stays open)
    {"first_byte_ms": 3000, ...} wait before the status line, then act as the rest says
    {"reset": true}             read the request, close with a TCP RST, no answer
    {"stream": N}               200 with a chunked body (no Content-Length) of N bytes: a pull
                                reply's opening then spaces (replies past the client's cap)

Unmatched paths answer 404 `{"error":"no route"}`. Admin paths:
    POST /_hostile/routes      JSON object of routes, merged into the current ones
    GET  /_hostile/counters    {"<path>": requests, ...} counted per request path
    DELETE /_hostile/counters  reset the counters
Connections are kept alive (HTTP/1.1 with Content-Length); each one has its own thread, so a
hung request never holds up another connection."""
import argparse
import json
import os
import socket
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROUTES = {}
STEP = {}          # route key -> index of the next action in its list
COUNTERS = {}
LOCK = threading.Lock()


def pick(path):
    with LOCK:
        COUNTERS[path] = COUNTERS.get(path, 0) + 1
        best = None
        for key in ROUTES:
            if key == path or (key.endswith("*") and path.startswith(key[:-1])):
                if best is None or len(key) > len(best) or key == path:
                    best = key
                    if key == path:
                        break
        if best is None:
            return {"status": 404, "body": '{"error":"no route"}'}
        route = ROUTES[best]
        if isinstance(route, list):
            i = STEP.get(best, 0)
            STEP[best] = i + 1
            return route[min(i, len(route) - 1)] if route else {}
        return route


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def reply(self, status, body, headers=None):
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def stream(self, n):
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        head = b'{"receivedMessages":['
        chunk = b" " * 65536
        sent = 0
        try:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(head), head))
            while sent < n:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
            self.wfile.write(b"0\r\n\r\n")
        except (ConnectionError, BrokenPipeError):
            self.close_connection = True

    def admin(self, path, data):
        if path == "/_hostile/routes" and self.command == "POST":
            with LOCK:
                ROUTES.update(json.loads(data or b"{}"))
                STEP.clear()
            return self.reply(200, "{}")
        if path == "/_hostile/counters":
            with LOCK:
                if self.command == "DELETE":
                    COUNTERS.clear()
                return self.reply(200, json.dumps(COUNTERS))
        return self.reply(404, '{"error":"unknown admin path"}')

    def handle_any(self):
        data = self.body()
        path = self.path.split("?", 1)[0]
        if path.startswith("/_hostile/"):
            return self.admin(path, data)
        act = pick(path)
        if act.get("first_byte_ms"):
            time.sleep(act["first_byte_ms"] / 1000.0)
        if act.get("hang"):
            while True:           # the thread (a daemon) holds the connection open forever
                time.sleep(3600)
        if act.get("reset"):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
            self.connection.close()
            self.close_connection = True
            return
        if act.get("stream"):
            return self.stream(int(act["stream"]))
        if "redirect" in act:
            return self.reply(act.get("status", 302), act.get("body", ""),
                              {"Location": act["redirect"], **act.get("headers", {})})
        self.reply(act.get("status", 200), act.get("body", "{}"), act.get("headers"))

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = handle_any


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # clients that give up (timeouts, tests tearing down) are the point here, not news
        if not isinstance(sys.exc_info()[1], (ConnectionError, BrokenPipeError)):
            super().handle_error(request, client_address)


def exit_with_parent(poll=0.2):
    """Exits when the process that started this one is gone: a thread watches for the kernel
    giving us a new parent (init or a subreaper). Not PR_SET_PDEATHSIG here: it fires when the
    parent *thread* ends, and a Python test may start the server from a thread that ends first."""
    parent = os.getppid()

    def watch():
        while os.getppid() == parent:
            time.sleep(poll)
        os._exit(0)
    if parent == 1:
        return  # started by init (a container's entry point): nothing to outlive
    threading.Thread(target=watch, daemon=True).start()


def main():
    exit_with_parent()
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--routes", default="{}", help="JSON object, or @FILE")
    a = ap.parse_args()
    text = open(a.routes[1:]).read() if a.routes.startswith("@") else a.routes
    ROUTES.update(json.loads(text))
    srv = Server(("127.0.0.1", a.port), Handler)
    print(f"listening on http://127.0.0.1:{srv.server_address[1]}", flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
