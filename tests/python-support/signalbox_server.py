"""Test support for the Python suites (tests/signalr-python, tests/pusher-python): a real
`signalbox serve` on a free port and a fresh data directory, with a tenant, an app and a key."""

import json
import os
import socket
import subprocess
import tempfile
import time
import urllib.request

DEADLINE = 20.0
ADMIN = "sba_python_clients_operator_token_0123456789"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(method, url, bearer, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Authorization", f"Bearer {bearer}")
    if body is not None:
        request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=10) as response:
        text = response.read().decode()
        return response.status, (json.loads(text) if text else None)


class Server:
    """`signalbox serve` (SIGNALBOX_BIN) with an app of `settings` and a key of it: `app` is
    the app id, `key` the key as created (`credential`, `pusher`, …)."""

    def __init__(self, settings=None):
        self.dir = tempfile.TemporaryDirectory()
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ, SIGNALBOX_ADMIN_TOKEN=ADMIN, SIGNALBOX_LOG="warn",
                   SIGNALBOX_METRICS_LISTEN="127.0.0.1:0")
        self.process = subprocess.Popen(
            [os.environ["SIGNALBOX_BIN"], "serve", "--listen", f"127.0.0.1:{self.port}", "--data-dir", self.dir.name],
            env=env, stdout=subprocess.DEVNULL)
        until = time.monotonic() + DEADLINE
        while True:
            try:
                with urllib.request.urlopen(f"{self.base}/readyz", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > until:
                raise RuntimeError("signalbox serve did not become ready")
            time.sleep(0.05)
        _, tenant = call("POST", f"{self.base}/v1/tenants", ADMIN, {"name": "python"})
        _, app = call("POST", f"{self.base}/v1/apps", tenant["token"], {"name": "python", **(settings or {})})
        _, key = call("POST", f"{self.base}/v1/apps/{app['id']}/keys", tenant["token"], {"name": "python"})
        self.app, self.key = app["id"], key

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=30)
        self.dir.cleanup()
