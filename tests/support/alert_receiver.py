"""A webhook receiver for Alertmanager's notifications, run by the monitoring suite in a container.

Standard library only: the suite runs it with the API image's Python (``python3 -c`` with this
file's text, so nothing is mounted and it works wherever the engine runs, Docker Desktop too), on
the compose project's `monitoring` network, where Alertmanager reaches it by container name. The
suite reads what arrived through a port published on 127.0.0.1.

    POST <any path>   a notification (Alertmanager's webhook JSON): kept with its arrival time
    GET /received     every notification so far: [{"received_at": <unix time>, "body": {...}}]
"""

from __future__ import annotations

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

RECEIVED: list[dict[str, object]] = []
LOCK = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"null")
        with LOCK:
            RECEIVED.append({"received_at": time.time(), "body": body})
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        if self.path != "/received":
            self.send_error(404)
            return
        with LOCK:
            payload = json.dumps(RECEIVED).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:
        sys.stderr.write("alert-receiver: " + (format % args) + "\n")


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8099
    ThreadingHTTPServer(("0.0.0.0", port), Handler).serve_forever()
