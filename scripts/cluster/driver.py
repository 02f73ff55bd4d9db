#!/usr/bin/env python3
"""Cluster test driver (started by scripts/cluster/run.sh, which prepares PostgreSQL and nginx).

Two version-app nodes on one PostgreSQL database behind nginx. Check and Service Ping load go
through nginx while one node gets SIGTERM (and is restarted), the other SIGKILL, and then
PostgreSQL itself is restarted. Every figure is printed; any broken promise fails the run
(exit 1). Only 127.0.0.1 is contacted; every loop and wait is bounded.
"""

import base64
import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid as uuidlib

from common import BaseNode, check, failures, get, post, say

ENV = os.environ
BIN = ENV["APP_BIN"]
WORK = ENV["WORK"]
DB_URL = ENV["CLUSTER_DB_URL"]
PSQL = ENV["PSQL"].split()
PG_STOP = ENV["PG_STOP"]
PG_START = ENV["PG_START"]
NGINX_PORT = int(ENV["NGINX_PORT"])
NODE_PORTS = [int(p) for p in ENV["NODE_PORTS"].split(",")]
FIXTURE = ENV["FIXTURE"]
FLUSH_MS = 500
# Short intervals so that "once per interval" is visible in seconds.
JOB_INTERVALS = {"insights_rollup": 2, "retention": 3}
CHECK_THREADS = int(ENV.get("CHECK_THREADS", "4"))
INGEST_THREADS = int(ENV.get("INGEST_THREADS", "2"))

def psql(sql):
    out = subprocess.run(PSQL + ["-At", "-c", sql], capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        raise RuntimeError(f"psql failed: {out.stderr}")
    return out.stdout.strip()


# --- nodes ---------------------------------------------------------------------------------


class Node(BaseNode):
    def __init__(self, index, port):
        super().__init__(f"node{index}", port)
        self.index, self.starts = index, 0

    @property
    def addr(self):
        return f"127.0.0.1:{self.port}"

    def start(self):
        self.starts += 1
        settings = {
            "DATABASE_URL": DB_URL,
            "VERSION_APP_LISTEN": self.addr,
            "VERSION_APP_WORKERS": "2",
            "VERSION_APP_DATABASE_POOL_SIZE": "6",
            "VERSION_APP_CHECK_FLUSH_INTERVAL_MS": str(FLUSH_MS),
            "VERSION_APP_RELEASE_REFRESH_SECS": "2",
            "VERSION_APP_DEVOPS_LEADERS_REFRESH_SECS": "5",
            "VERSION_APP_INSIGHTS_REFRESH_SECS": str(JOB_INTERVALS["insights_rollup"]),
            "VERSION_APP_RETENTION_INTERVAL_SECS": str(JOB_INTERVALS["retention"]),
            "VERSION_APP_SHUTDOWN_TIMEOUT_SECS": "10",
            "VERSION_APP_DATABASE_TIMEOUT_SECS": "2",
            "VERSION_APP_TRUST_FORWARDED_FOR": "true",
            "RUST_LOG": "info",
        }
        self.spawn(BIN, settings, f"{WORK}/node{self.index}.log")

    def signal(self, sig):
        self.proc.send_signal(sig)

    def wait_exit(self, timeout=20):
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise RuntimeError(f"node{self.index} did not exit within {timeout} s")


def job_runs(m, job, outcome):
    return m.get(f'version_app_job_runs_total{{job="{job}",outcome="{outcome}"}}', 0.0)


# --- load ----------------------------------------------------------------------------------

INFO = base64.urlsafe_b64encode(b'{"version":"17.0.1"}').decode()
with open(FIXTURE, "rb") as f:
    PAYLOAD = json.load(f)


def payload(tag, n):
    p = dict(PAYLOAD)
    p["uuid"] = str(uuidlib.uuid4())
    p["hostname"] = f"ping-{n}.{tag}.cluster.example"
    p["recorded_at"] = "2026-12-03 10:00:00 UTC"
    return p["uuid"], json.dumps(p).encode()


class Load:
    """Check and ingest load through nginx, each answer noted with the node that gave it."""

    def __init__(self, tag):
        self.tag, self.stop = tag, threading.Event()
        self.lock = threading.Lock()
        self.checks = []  # (status, upstream, finished_at)
        self.pings = []  # (status, upstream, uuid, id, retry_after)
        self.errors = []
        self.threads = []

    def start(self):
        for i in range(CHECK_THREADS):
            self.threads.append(threading.Thread(target=self.check_loop, args=(i,), daemon=True))
        for i in range(INGEST_THREADS):
            self.threads.append(threading.Thread(target=self.ping_loop, args=(i,), daemon=True))
        for t in self.threads:
            t.start()
        return self

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(timeout=60)

    def check_loop(self, i):
        conn, n = None, 0
        while not self.stop.is_set():
            n += 1
            host = f"h{(i * 1000 + n) % 50}.{self.tag}.cluster.example"
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", NGINX_PORT, timeout=30)
                conn.request(
                    "GET",
                    f"/check.svg?gitlab_info={INFO}",
                    headers={"Referer": f"https://{host}/help"},
                )
                r = conn.getresponse()
                r.read()
                up = (r.getheader("X-Upstream") or "").split(",")[-1].strip()
                with self.lock:
                    self.checks.append((r.status, up, time.time()))
            except (OSError, http.client.HTTPException) as e:
                with self.lock:
                    self.errors.append(f"check: {e!r}")
                conn = None
                time.sleep(0.01)

    def ping_loop(self, i):
        n = 0
        while not self.stop.is_set():
            n += 1
            uid, body = payload(self.tag, i * 100000 + n)
            try:
                status, headers, answer = post(NGINX_PORT, "/usage_data", body)
                up = (headers.get("x-upstream") or "").split(",")[-1].strip()
                stored_id = None
                if status == 201:
                    stored_id = json.loads(answer).get("id")
                with self.lock:
                    self.pings.append((status, up, uid, stored_id, headers.get("retry-after")))
                if status == 503:
                    time.sleep(0.2)
            except (OSError, http.client.HTTPException) as e:
                with self.lock:
                    self.errors.append(f"ping: {e!r}")
                time.sleep(0.05)

    def answered(self, addr=None, after=None):
        return sum(
            1
            for s, up, t in self.checks
            if s == 200 and (addr is None or up == addr) and (after is None or t >= after)
        )


def stored_checks(tag):
    return int(psql(f"SELECT COALESCE(sum(count), 0) FROM version_checks WHERE host LIKE '%.{tag}.cluster.example'"))


def wait_flushed(tag, expected, timeout=15):
    """Polls the store until it holds `expected` checks of `tag` (or the timeout passes)."""
    deadline = time.time() + timeout
    while True:
        got = stored_checks(tag)
        if got >= expected or time.time() > deadline:
            return got
        time.sleep(0.25)


def verify_pings(load, label):
    created = [p for p in load.pings if p[0] == 201]
    statuses = {}
    for p in load.pings:
        statuses[p[0]] = statuses.get(p[0], 0) + 1
    say(f"  pings: {len(load.pings)} answered, by status {statuses}")
    bad = [p for p in load.pings if p[0] not in (201, 503)]
    check(not bad, f"{label}: every Service Ping answered 201 or 503 ({len(bad)} others)")
    no_retry = [p for p in load.pings if p[0] == 503 and not p[4]]
    check(not no_retry, f"{label}: every 503 carries Retry-After ({len(no_retry)} without)")
    if created:
        uuids = ",".join(f"'{p[2]}'" for p in created)
        rows = psql(f"SELECT uuid, count(*) FROM usage_data WHERE uuid IN ({uuids}) GROUP BY uuid")
        counts = dict(line.split("|") for line in rows.splitlines() if line)
        once = sum(1 for p in created if counts.get(p[2]) == "1")
        check(once == len(created), f"{label}: {once} of {len(created)} pings answered 201 stored exactly once")
    half = psql(
        f"SELECT count(*) FROM usage_data u WHERE u.hostname LIKE '%.{load.tag}.cluster.example' AND ("
        "NOT EXISTS (SELECT 1 FROM usage_data_raw r WHERE r.usage_data_id = u.id) OR "
        # Its values row (staged, or merged into a block), written in the same transaction;
        # the metric_values view is keyed by metric, too slow to probe per submission.
        "NOT EXISTS (SELECT 1 FROM usage_data_values v WHERE v.usage_data_id = u.id))"
    )
    check(half == "0", f"{label}: no submission half-stored (without raw payload or metric values: {half})")


def by_node(load, nodes):
    return ", ".join(f"node{n.index} {load.answered(n.addr)}" for n in nodes)


# --- phases --------------------------------------------------------------------------------


def phase_sigterm(nodes):
    say("\n== phase 1: check + ingest load; node1 gets SIGTERM mid-run and is restarted")
    node1, node2 = nodes
    before2 = node2.metrics().get("version_app_check_records_buffered_total", 0.0)
    load = Load("a").start()
    time.sleep(3)
    node1.signal(signal.SIGTERM)
    t0 = time.time()
    code = node1.wait_exit()
    say(f"  node1 exited with {code} {time.time() - t0:.1f} s after SIGTERM")
    check(code == 0, "node1 shut down cleanly on SIGTERM")
    node1.start()
    node1.wait_ready()
    say(f"  node1 restarted and ready {time.time() - t0:.1f} s after SIGTERM")
    time.sleep(3)
    load.finish()
    after2 = node2.metrics().get("version_app_check_records_buffered_total", 0.0)
    answered = load.answered()
    stored = wait_flushed("a", answered)
    not200 = [c for c in load.checks if c[0] != 200]
    say(f"  checks: {len(load.checks)} sent, {answered} answered 200 ({by_node(load, nodes)}), "
        f"{len(load.errors)} transport errors")
    check(not not200 and not load.errors and answered > 0, f"phase 1: every check answered 200 by nginx ({len(not200)} not)")
    say(f"  store: {stored} checks; node2 /metrics counted {int(after2 - before2)} in this phase, "
        f"nginx saw node2 answer {load.answered(node2.addr)}")
    check(stored == answered, f"phase 1: store holds exactly the checks answered ({stored} = {answered})")
    check(int(after2 - before2) == load.answered(node2.addr),
          "phase 1: node2's own counter equals what it answered through nginx")
    verify_pings(load, "phase 1")


def phase_sigkill(nodes):
    say("\n== phase 2: check + ingest load; node2 gets SIGKILL mid-run")
    node1, node2 = nodes
    load = Load("b").start()
    time.sleep(3)
    scraped_at = time.time()
    m = node2.metrics()
    node2.signal(signal.SIGKILL)
    node2.wait_exit()
    unflushed = int(m.get("version_app_check_unflushed", -1))
    time.sleep(3)
    load.finish()
    answered = load.answered()
    after_scrape = load.answered(node2.addr, after=scraped_at)
    stored = wait_flushed("b", answered, timeout=4)
    lost = answered - stored
    bound = unflushed + after_scrape
    not200 = [c for c in load.checks if c[0] != 200]
    say(f"  checks: {len(load.checks)} sent, {answered} answered 200 ({by_node(load, nodes)}), "
        f"{len(load.errors)} transport errors")
    check(not not200 and not load.errors, f"phase 2: every check answered 200 by nginx ({len(not200)} not)")
    say(f"  node2 /metrics just before SIGKILL: version_app_check_unflushed = {unflushed}; "
        f"node2 answered {after_scrape} more before it died")
    say(f"  store: {stored} checks; lost {lost}; bound (unflushed + answered after the scrape) {bound}")
    check(unflushed >= 0, "phase 2: /metrics shows the unflushed bound")
    check(0 <= lost <= bound, f"phase 2: loss {lost} is within what node2 held unflushed ({bound})")
    verify_pings(load, "phase 2")
    node2.start()
    node2.wait_ready()


def phase_duplicates(nodes):
    say("\n== phase 3: one payload sent to both nodes at once (x10)")
    results = []
    for n in range(10):
        uid, body = payload("d", n)
        answers = [None, None]

        def send(i):
            answers[i] = post(nodes[i].port, "/usage_data", body)

        threads = [threading.Thread(target=send, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        stored = psql(f"SELECT count(*) FROM usage_data WHERE uuid = '{uid}'")
        results.append(([a[0] if a else None for a in answers], [a[2] if a else None for a in answers], stored))
    statuses = [r[0] for r in results]
    say(f"  answers: {statuses}")
    check(all(s == [201, 201] for s in statuses), "phase 3: both nodes answer 201")
    check(all(r[1][0] == r[1][1] for r in results), "phase 3: both answers are byte for byte the same")
    check(all(r[2] == "1" for r in results), "phase 3: each payload stored once")


def phase_jobs(nodes, window=10):
    say(f"\n== phase 4: background jobs on both nodes, over {window} s (phase 3 runs meanwhile)")
    jobs = list(JOB_INTERVALS)
    schedule = lambda: dict(
        line.split("|") for line in psql("SELECT job, runs FROM job_schedule").splitlines() if line
    )
    t0 = time.time()
    s0, m0 = schedule(), [n.metrics() for n in nodes]
    phase_duplicates(nodes)
    time.sleep(max(0.0, window - (time.time() - t0)))
    m1, s1 = [n.metrics() for n in nodes], schedule()
    elapsed = time.time() - t0
    for job in jobs:
        every = JOB_INTERVALS[job]
        ran = [
            int(job_runs(b, job, "ok") + job_runs(b, job, "failed") - job_runs(a, job, "ok") - job_runs(a, job, "failed"))
            for a, b in zip(m0, m1)
        ]
        not_due = [int(job_runs(b, job, "not_due") - job_runs(a, job, "not_due")) for a, b in zip(m0, m1)]
        shared = int(s1.get(job, 0)) - int(s0.get(job, 0))
        total = sum(ran)
        most = int(elapsed / (0.9 * every)) + 2
        say(f"  {job} (every {every} s): ran {ran} on node1/node2 = {total}, not due {not_due}, "
            f"job_schedule counted {shared}; once per interval allows at most {most}")
        check(total <= most, f"phase 4: {job} ran once per interval, not twice ({total} <= {most})")
        check(total >= int(elapsed / every) - 2, f"phase 4: {job} kept running ({total})")
        check(abs(shared - total) <= 1, f"phase 4: {job}: job_schedule agrees with the nodes' /metrics")
    for job in ("release_refresh", "devops_leaders"):
        ran = [int(job_runs(b, job, "ok") - job_runs(a, job, "ok")) for a, b in zip(m0, m1)]
        say(f"  {job} (per-process cache, every process): ran {ran}")
    dur = [m1[i].get(f'version_app_job_last_duration_seconds{{job="insights_rollup"}}') for i in range(2)]
    check(any(d is not None for d in dur), f"phase 4: /metrics shows each job's last duration ({dur})")


def phase_pg_restart(nodes):
    say("\n== phase 5: PostgreSQL stopped for 3 s and started again under load")
    load = Load("c").start()
    time.sleep(2)
    t0 = time.time()
    subprocess.run(["bash", "-c", PG_STOP], check=True, timeout=60, capture_output=True)
    time.sleep(3)
    subprocess.run(["bash", "-c", PG_START], check=True, timeout=60, capture_output=True)
    say(f"  PostgreSQL back after {time.time() - t0:.1f} s")
    time.sleep(6)
    load.finish()
    # Both nodes reconnect by themselves: each stores a payload sent to it directly.
    for node in nodes:
        deadline, status = time.time() + 30, None
        while time.time() < deadline:
            status = post(node.port, "/usage_data", payload("c", 999000 + node.index)[1])[0]
            if status == 201:
                break
            time.sleep(0.5)
        check(status == 201, f"phase 5: node{node.index} stores again after the restart")
    answered = load.answered()
    stored = wait_flushed("c", answered)
    not200 = [c for c in load.checks if c[0] != 200]
    say(f"  checks: {len(load.checks)} sent, {answered} answered 200 ({by_node(load, nodes)}), "
        f"{len(load.errors)} transport errors; store {stored}")
    check(not not200 and not load.errors, f"phase 5: checks never failed ({len(not200)} not 200)")
    check(stored == answered, f"phase 5: every check answered during the gap reached the store ({stored} = {answered})")
    n503 = sum(1 for p in load.pings if p[0] == 503)
    check(n503 > 0, f"phase 5: ingest answered 503 during the gap ({n503})")
    verify_pings(load, "phase 5")


def main():
    started = time.time()
    nodes = [Node(1, NODE_PORTS[0]), Node(2, NODE_PORTS[1])]
    say("== start: two nodes at once on a fresh database (they migrate one after the other)")
    for n in nodes:
        n.start()
    try:
        for n in nodes:
            n.wait_ready()
        say(f"  both ready after {time.time() - started:.1f} s")
        phase_sigterm(nodes)
        phase_sigkill(nodes)
        phase_jobs(nodes)
        phase_pg_restart(nodes)
    except Exception as e:  # noqa: BLE001 - any failure of the harness fails the run
        failures.append(f"harness: {e!r}")
        say(f"  FAIL  harness: {e!r}")
    finally:
        for n in nodes:
            if n.proc and n.proc.poll() is None:
                n.signal(signal.SIGTERM)
        for n in nodes:
            if n.proc:
                try:
                    n.proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    n.proc.kill()
    say(f"\n== {'FAILED' if failures else 'PASSED'} in {time.time() - started:.0f} s")
    for f in failures:
        say(f"  - {f}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
