"""What the cluster drivers (driver.py, replica_driver.py) share: output and verdicts, HTTP on
127.0.0.1 with bounded timeouts, the Prometheus text parser, and starting a node and waiting
for it to be ready."""

import http.client
import os
import subprocess
import time

# Every broken promise, in order; a driver exits 1 when it is not empty.
failures = []


def say(*parts):
    print(*parts, flush=True)


def check(ok, what):
    say(("  ok    " if ok else "  FAIL  ") + what)
    if not ok:
        failures.append(what)


def get(port, path, headers=None, timeout=10):
    """(status, headers with lower-case names, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers or {})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def post(port, path, body, timeout=30):
    """POSTs JSON; (status, headers with lower-case names, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def parse_metrics(text):
    """Series (with labels, as written) -> value."""
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            try:
                values[name] = float(value)
            except ValueError:
                pass
    return values


def app_env(settings):
    """The environment for a node or the CLI: ours without any VERSION_APP_* setting, plus
    `settings`, so that nothing from the caller's shell changes what is tested."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VERSION_APP_")}
    env.update(settings)
    return env


class BaseNode:
    """One `version-app serve` process on 127.0.0.1:port; `name` is used in messages."""

    def __init__(self, name, port):
        self.name, self.port, self.proc = name, port, None

    def spawn(self, binary, settings, log_path):
        log = open(log_path, "ab")
        self.proc = subprocess.Popen([binary, "serve"], env=app_env(settings), stdout=log, stderr=log)

    def wait_ready(self, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}")
            try:
                if get(self.port, "/-/ready")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready after {timeout} s")

    def metrics(self):
        status, _, body = get(self.port, "/metrics")
        if status != 200:
            raise RuntimeError(f"{self.name} /metrics answered {status}")
        return parse_metrics(body.decode())
