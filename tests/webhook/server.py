#!/usr/bin/env python3
"""Webhook receiver for tests/unit/test_webhook.c.

    server.py SECRET_HEX RECORD_DIR [CERT KEY]

Listens on a free 127.0.0.1 port (HTTPS with CERT/KEY), prints "PORT <n>"
on stdout, then serves until killed. Every POST is checked against
X-Webhook-Signature = hex(HMAC-SHA256(secret, body)) and recorded: the body
goes to RECORD_DIR/<seq>.json and a line "<seq> <path> <sig ok|bad>
<length> <user-agent> <content-type>" is appended to RECORD_DIR/log. A bad
signature answers 401. Otherwise the path decides:

    /ok       200            /e404  404          /r307   307 -> /ok
    /slow     sleeps 3 s     /e429  429          /r308   308 -> /ok?from=308
    /e500     500            /e403  403          /r302   302 -> /ok
    /loop     307 -> /loop   /close closes without answering
    /rdown    307 -> http://127.0.0.1:9/ok (an https -> http downgrade)
"""
import hashlib
import hmac
import os
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SECRET = bytes.fromhex(sys.argv[1])
RECORD = sys.argv[2]
lock = threading.Lock()
seq = [0]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def answer(self, code, location=None):
        body = b"{}\n"
        self.send_response(code)
        if location is not None:
            self.send_header("Location", location)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except OSError:
            pass

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(n) if n > 0 else b""
        want = hmac.new(SECRET, body, hashlib.sha256).hexdigest()
        got = self.headers.get("X-Webhook-Signature", "")
        ok = hmac.compare_digest(want, got)
        path = self.path
        with lock:
            seq[0] += 1
            k = seq[0]
            with open(os.path.join(RECORD, "%d.json" % k), "wb") as f:
                f.write(body)
            with open(os.path.join(RECORD, "log"), "a") as f:
                f.write("%d %s %s %d %s %s\n" % (
                    k, path, "ok" if ok else "bad", len(body),
                    self.headers.get("User-Agent", "-"),
                    self.headers.get("Content-Type", "-")))
        if not ok:
            return self.answer(401)
        route = path.split("?", 1)[0]
        if route == "/ok":
            return self.answer(200)
        if route == "/slow":
            time.sleep(3)
            return self.answer(200)
        if route.startswith("/e") and route[2:].isdigit():
            return self.answer(int(route[2:]))
        if route == "/r307":
            return self.answer(307, "/ok")
        if route == "/r308":
            return self.answer(308, "/ok?from=308")
        if route == "/r302":
            return self.answer(302, "/ok")
        if route == "/rdown":
            return self.answer(307, "http://127.0.0.1:9/ok")
        if route == "/loop":
            return self.answer(307, "/loop")
        if route == "/close":
            self.close_connection = True
            return
        return self.answer(404)


def main():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    if len(sys.argv) > 4:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(sys.argv[3], sys.argv[4])
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    print("PORT %d" % srv.server_address[1], flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
