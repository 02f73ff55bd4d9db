#!/usr/bin/env python3
"""Read-replica test driver (started by scripts/cluster/replica.sh, which makes the primary and
its streaming standby).

Two version-app nodes on the primary: "replica", with database_read_url = the standby and a
small database_read_max_lag_secs, and "reference", without a replica, whose answer is the
primary's. Service Pings are posted, the insights rollups refreshed (CLI) and the installations
series read with an insights token (CLI) from both nodes while the standby keeps up, while its
replay is paused (the lag grows past the limit: reads must fall back to the primary), after
replay is resumed, and while the standby is cut off from its primary (it receives nothing, so
everything it received is replayed: reads must still fall back). Every figure is printed; any broken promise fails the run (exit 1). Only
127.0.0.1 is contacted; every loop and wait is bounded.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time

from common import BaseNode, app_env, check, failures, get, post, say

ENV = os.environ
BIN = ENV["APP_BIN"]
WORK = ENV["WORK"]
PRIMARY_URL = ENV["PRIMARY_URL"]
STANDBY_URL = ENV["STANDBY_URL"]
MAX_LAG = int(ENV["MAX_LAG_SECS"])
NODE_PORTS = [int(p) for p in ENV["NODE_PORTS"].split(",")]
FIXTURE = ENV["FIXTURE"]
# The read_replica_health job's interval (src/read_replica.rs): bounds every wait on it.
HEALTH_EVERY = 5
SERIES = "/api/v1/insights/installations?period=month&from=2026-01-01&to=2027-01-01"

USABLE = "version_app_read_replica_usable"
LAG = "version_app_read_replica_lag_seconds"
LAGGING = 'version_app_read_replica_unusable_total{reason="lagging"}'
UNREACHABLE = 'version_app_read_replica_unusable_total{reason="unreachable"}'
ERRORS = 'version_app_read_replica_unusable_total{reason="error"}'
ON_REPLICA = 'version_app_read_queries_total{target="replica"}'
FELL_BACK = 'version_app_read_queries_total{target="primary_fallback"}'

def sql(url, query):
    out = subprocess.run(
        ["psql", url, "-v", "ON_ERROR_STOP=1", "-At", "-c", query],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if out.returncode != 0:
        raise RuntimeError(f"psql failed: {out.stderr.strip()}")
    return out.stdout.strip()


def cli(*args):
    env = app_env({"DATABASE_URL": PRIMARY_URL})
    out = subprocess.run([BIN, *args], env=env, capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise RuntimeError(f"version-app {' '.join(args)} failed: {out.stderr.strip()}")
    return out.stdout.strip()


# --- nodes ---------------------------------------------------------------------------------


class Node(BaseNode):
    def __init__(self, name, port, read_url):
        super().__init__(f"node {name}", port)
        self.short, self.read_url = name, read_url

    def start(self):
        settings = {
            "DATABASE_URL": PRIMARY_URL,
            "VERSION_APP_LISTEN": f"127.0.0.1:{self.port}",
            "VERSION_APP_WORKERS": "2",
            "VERSION_APP_DATABASE_POOL_SIZE": "4",
            # Rollups only when the driver says (CLI), so that it knows what each holds.
            "VERSION_APP_INSIGHTS_REFRESH_SECS": "3600",
            "VERSION_APP_SHUTDOWN_TIMEOUT_SECS": "10",
            "RUST_LOG": "info",
        }
        if self.read_url:
            settings["VERSION_APP_DATABASE_READ_URL"] = self.read_url
            settings["VERSION_APP_DATABASE_READ_MAX_LAG_SECS"] = str(MAX_LAG)
        self.spawn(BIN, settings, f"{WORK}/node-{self.short}.log")
        with open(f"{WORK}/node-{self.short}.pid", "w") as f:
            f.write(str(self.proc.pid))

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def series(self, token):
        status, _, body = get(self.port, SERIES, {"PRIVATE-TOKEN": token})
        if status != 200:
            raise RuntimeError(f"{self.name} {SERIES} answered {status}: {body[:300]!r}")
        return json.loads(body)


def wait_metric(node, name, ok, timeout):
    """Polls `node`'s /metrics until ok(value of `name`); returns (metrics, seconds waited,
    highest lag gauge seen meanwhile), or raises after `timeout` seconds."""
    t0, highest = time.time(), 0.0
    while True:
        m = node.metrics()
        value = m.get(name, 0.0)
        highest = max(highest, m.get(LAG, 0.0))
        if ok(value):
            return m, time.time() - t0, highest
        if time.time() - t0 > timeout:
            raise RuntimeError(f"{name} = {value} on {node.name} after {timeout} s")
        time.sleep(0.1)


# --- data ----------------------------------------------------------------------------------

with open(FIXTURE, "rb") as f:
    PAYLOAD = json.load(f)


def post_pings(node, tag, months):
    """One installation per entry of `months` ("2026-10", ...), each submitting once that month."""
    for n, month in enumerate(months):
        p = dict(PAYLOAD)
        p["uuid"] = f"replica-{tag}-{n}"
        p["hostname"] = f"gitlab-{n}.{tag}.replica.example"
        p["recorded_at"] = f"{month}-{10 + n % 15:02d} 10:00:00 UTC"
        status, _, body = post(node.port, "/usage_data", json.dumps(p).encode())
        if status != 201:
            raise RuntimeError(f"POST /usage_data answered {status}: {body[:300]!r}")


def counts(series):
    """{period: installations} of an installations answer."""
    out = {}
    for row in series.get("rows", []):
        out[row["period"]] = out.get(row["period"], 0) + int(row["installations"])
    return out


def replayed_all(timeout=15):
    """Waits until the standby has replayed everything the primary has written; seconds."""
    target = sql(PRIMARY_URL, "SELECT pg_current_wal_lsn()")
    t0 = time.time()
    while sql(STANDBY_URL, f"SELECT pg_last_wal_replay_lsn() >= '{target}'::pg_lsn") != "t":
        if time.time() - t0 > timeout:
            raise RuntimeError(f"the standby did not replay up to {target} within {timeout} s")
        time.sleep(0.05)
    return time.time() - t0


def submissions(url):
    return int(sql(url, "SELECT count(*) FROM usage_data"))


def refresh():
    t0 = time.time()
    out = cli("insights", "refresh")
    return f"{out.splitlines()[-1] if out else ''} ({time.time() - t0:.1f} s)"


# --- phases --------------------------------------------------------------------------------


def phase_in_step(app, ref, token):
    say("\n== phase 1: the standby keeps up: analyst reads go to the replica")
    post_pings(ref, "a", ["2026-10"] * 5 + ["2026-11"] * 3)
    say(f"  posted 8 Service Pings (5 in 2026-10, 3 in 2026-11); {refresh()}")
    say(f"  standby replayed everything the primary wrote {replayed_all():.2f} s later")
    m, waited, _ = wait_metric(app, USABLE, lambda v: v == 1, 3 * HEALTH_EVERY)
    say(f"  {USABLE} = 1 ({waited:.1f} s to see it), {LAG} = {m.get(LAG)}")
    before = m.get(ON_REPLICA, 0.0)
    on_app, on_ref = app.series(token), ref.series(token)
    after = app.metrics().get(ON_REPLICA, 0.0)
    say(f"  installations per month: via the replica {counts(on_app)}, on the primary {counts(on_ref)}")
    check(counts(on_ref) == {"2026-10-01": 5, "2026-11-01": 3}, "phase 1: the primary counts what was posted")
    check(on_app == on_ref, "phase 1: the answer read on the replica equals the primary's")
    check(after - before == 1, f"phase 1: the read went to the replica ({ON_REPLICA} {before:.0f} -> {after:.0f})")
    check(m.get(LAG, -1) <= MAX_LAG, f"phase 1: lag {m.get(LAG)} s within the limit ({MAX_LAG} s)")
    return on_ref


def phase_paused(app, ref, token, old):
    say(f"\n== phase 2: replay paused on the standby; the primary moves on (limit {MAX_LAG} s)")
    changes_logged_before = [
        line for line in logged(app) if "read_replica.changes=" in line and "read_replica.changes=0" not in line
    ]
    sql(STANDBY_URL, "SELECT pg_wal_replay_pause()")
    t_pause = time.time()
    deadline = t_pause + 10
    while sql(STANDBY_URL, "SELECT pg_get_wal_replay_pause_state()") != "paused":
        if time.time() > deadline:
            raise RuntimeError("the standby did not pause replay within 10 s")
        time.sleep(0.05)
    say(f"  replay paused ({time.time() - t_pause:.2f} s to pause)")
    m0 = app.metrics()
    # New commits on the primary: the standby receives them and does not replay them.
    post_pings(ref, "b", ["2026-11"] * 4)
    say(f"  posted 4 more Service Pings in 2026-11; {refresh()}")
    m, waited, highest = wait_metric(app, USABLE, lambda v: v == 0, MAX_LAG + 3 * HEALTH_EVERY)
    say(f"  {USABLE} = 0 {time.time() - t_pause:.1f} s after the pause, {waited:.1f} s after the "
        f"last write; {LAG} = {m.get(LAG):.2f} s")
    standby_lag = sql(
        STANDBY_URL,
        "SELECT round(EXTRACT(EPOCH FROM clock_timestamp() - pg_last_xact_replay_timestamp())::numeric, 2) "
        "|| ' s, received ' || pg_last_wal_receive_lsn() || ', replayed ' || pg_last_wal_replay_lsn()",
    )
    say(f"  the standby itself: last replayed transaction {standby_lag}")
    lagging = m.get(LAGGING, 0.0) - m0.get(LAGGING, 0.0)
    say(f"  {LAGGING} +{lagging:.0f}, unreachable +{m.get(UNREACHABLE, 0) - m0.get(UNREACHABLE, 0):.0f}, "
        f"error +{m.get(ERRORS, 0) - m0.get(ERRORS, 0):.0f}")
    check(lagging >= 1, f"phase 2: the health check found the replica lagging ({LAGGING} +{lagging:.0f})")
    check(m.get(LAG, 0) > MAX_LAG, f"phase 2: the lag gauge {m.get(LAG):.2f} s is over the limit ({MAX_LAG} s)")
    on_standby, on_primary = submissions(STANDBY_URL), submissions(PRIMARY_URL)
    say(f"  submissions stored: {on_primary} on the primary, {on_standby} on the paused standby")
    check(on_standby < on_primary, "phase 2: the paused standby really is behind the primary")
    before, fell_before = m.get(ON_REPLICA, 0.0), m.get(FELL_BACK, 0.0)
    on_app, on_ref = app.series(token), ref.series(token)
    m = app.metrics()
    say(f"  installations per month: via the node with the replica {counts(on_app)}, "
        f"on the primary {counts(on_ref)} (before: {counts(old)})")
    check(counts(on_ref) == {"2026-10-01": 5, "2026-11-01": 7}, "phase 2: the primary counts the new pings")
    check(on_app == on_ref, "phase 2: the answer is the primary's new one, not the replica's stale one")
    lines = [line for line in logged(app) if "read replica unusable" in line]
    say(f"  the node logged: {lines[-1] if lines else '(nothing about the fallback)'}")
    if changes_logged_before:
        # The replica changed state (and that was logged) before this phase: one change line
        # a minute, so this fallback may rightly be held until the minute is over.
        say(f"  (a change of state was logged before the pause: {changes_logged_before[-1]})")
    else:
        check(any("lagging" in line for line in lines), "phase 2: the fallback was logged, with reason lagging")
    fell = m.get(FELL_BACK, 0.0) - fell_before
    check(fell == 1 and m.get(ON_REPLICA, 0.0) == before,
          f"phase 2: the read fell back to the primary ({FELL_BACK} +{fell:.0f}, {ON_REPLICA} unchanged)")
    return on_ref


def phase_resumed(app, ref, token, new):
    say("\n== phase 3: replay resumed: reads go back to the replica")
    say(f"  just before the resume: {LAG} = {app.metrics().get(LAG):.2f} s")
    sql(STANDBY_URL, "SELECT pg_wal_replay_resume()")
    t_resume = time.time()
    caught_up = replayed_all()
    say(f"  the standby replayed everything {caught_up:.2f} s after the resume")
    m, waited, _ = wait_metric(app, USABLE, lambda v: v == 1, 3 * HEALTH_EVERY)
    say(f"  {USABLE} = 1 {time.time() - t_resume:.1f} s after the resume; {LAG} = {m.get(LAG):.2f} s")
    check(m.get(LAG, -1) <= MAX_LAG, f"phase 3: lag {m.get(LAG):.2f} s within the limit again")
    before = m.get(ON_REPLICA, 0.0)
    on_app, on_ref = app.series(token), ref.series(token)
    after = app.metrics().get(ON_REPLICA, 0.0)
    say(f"  installations per month: via the replica {counts(on_app)}, on the primary {counts(on_ref)}")
    check(on_ref == new, "phase 3: the primary's answer did not change meanwhile")
    check(on_app == on_ref, "phase 3: the replica, caught up, answers the primary's new answer")
    check(after - before == 1, f"phase 3: the read went to the replica again ({ON_REPLICA} {before:.0f} -> {after:.0f})")
    say(f"  submissions stored: {submissions(PRIMARY_URL)} on the primary, {submissions(STANDBY_URL)} on the standby")


def receiving():
    return sql(STANDBY_URL, "SELECT count(*) FROM pg_stat_wal_receiver") == "1"


def phase_disconnected(app, ref, token, old):
    say("\n== phase 4: the standby loses its primary (walreceiver stopped); the primary moves on")
    conninfo = sql(STANDBY_URL, "SHOW primary_conninfo")
    # A primary that refuses connections: the standby keeps serving what it has, receives nothing.
    sql(STANDBY_URL, "ALTER SYSTEM SET primary_conninfo = 'host=127.0.0.1 port=1 user=postgres'")
    sql(STANDBY_URL, "SELECT pg_reload_conf()")
    t_cut, deadline = time.time(), time.time() + 15
    while receiving():
        if time.time() > deadline:
            raise RuntimeError("the standby's walreceiver did not stop within 15 s")
        time.sleep(0.1)
    say(f"  walreceiver gone {time.time() - t_cut:.1f} s after primary_conninfo was pointed at port 1")
    m0 = app.metrics()
    post_pings(ref, "c", ["2026-12"] * 2)
    say(f"  posted 2 more Service Pings in 2026-12; {refresh()}")
    try:
        m, waited, _ = wait_metric(app, USABLE, lambda v: v == 0, MAX_LAG + 3 * HEALTH_EVERY)
        fell = True
        say(f"  {USABLE} = 0 {time.time() - t_cut:.1f} s after the cut; {LAG} = {m.get(LAG):.2f} s")
    except RuntimeError as e:
        fell = False
        m = app.metrics()
        say(f"  {e}; {LAG} = {m.get(LAG):.2f} s")
    on_standby, on_primary = submissions(STANDBY_URL), submissions(PRIMARY_URL)
    say(f"  submissions stored: {on_primary} on the primary, {on_standby} on the cut-off standby")
    lagging = m.get(LAGGING, 0.0) - m0.get(LAGGING, 0.0)
    check(fell and lagging >= 1,
          f"phase 4: a standby that receives nothing any more is not used ({LAGGING} +{lagging:.0f})")
    fell_before = m.get(FELL_BACK, 0.0)
    on_app, on_ref = app.series(token), ref.series(token)
    fell_after = app.metrics().get(FELL_BACK, 0.0)
    say(f"  installations per month: via the node with the replica {counts(on_app)}, on the primary {counts(on_ref)}")
    check(on_app == on_ref and on_ref != old and fell_after - fell_before == 1,
          f"phase 4: the answer is the primary's new one ({FELL_BACK} {fell_before:.0f} -> {fell_after:.0f})")
    sql(STANDBY_URL, f"ALTER SYSTEM SET primary_conninfo = '{conninfo.replace(chr(39), chr(39) * 2)}'")
    sql(STANDBY_URL, "SELECT pg_reload_conf()")
    t_back = time.time()
    say(f"  primary_conninfo restored; the standby replayed everything {replayed_all(30):.1f} s later")
    m, waited, _ = wait_metric(app, USABLE, lambda v: v == 1, 3 * HEALTH_EVERY)
    say(f"  {USABLE} = 1 {time.time() - t_back:.1f} s after the restore; {LAG} = {m.get(LAG):.2f} s")
    before = m.get(ON_REPLICA, 0.0)
    on_app = app.series(token)
    after = app.metrics().get(ON_REPLICA, 0.0)
    check(on_app == on_ref and after - before == 1,
          f"phase 4: the replica, streaming again, answers the primary's answer ({ON_REPLICA} {before:.0f} -> {after:.0f})")


def logged(app):
    """The node's log lines about the replica's state, without colours and spans."""
    with open(f"{WORK}/node-{app.short}.log", encoding="utf-8", errors="replace") as f:
        text = re.sub(r"\x1b\[[0-9;]*m", "", f.read())
    return [
        line.replace('job{job.name="read_replica_health"}: ', "").strip()[:240]
        for line in text.splitlines()
        if "read replica" in line or "read_replica.changes" in line
    ]


def main():
    started = time.time()
    app = Node("replica", NODE_PORTS[0], STANDBY_URL)
    ref = Node("reference", NODE_PORTS[1], None)
    try:
        # The reference node first: it migrates the primary; the other then finds it migrated.
        ref.start()
        ref.wait_ready()
        app.start()
        app.wait_ready()
        say(f"== both nodes ready after {time.time() - started:.1f} s")
        token = cli("token", "create", "--scope", "insights:read", "--name", "replica test").splitlines()[-1]
        old = phase_in_step(app, ref, token)
        new = phase_paused(app, ref, token, old)
        phase_resumed(app, ref, token, new)
        phase_disconnected(app, ref, token, new)
        m = app.metrics()
        say("\n== /metrics of the node with the replica at the end")
        for name in (USABLE, LAG, LAGGING, UNREACHABLE, ERRORS, ON_REPLICA, FELL_BACK):
            say(f"  {name} {m.get(name, 0.0):g}")
        say("== its log lines about the replica")
        for line in logged(app):
            say(f"  {line}")
    except Exception as e:  # noqa: BLE001 - any failure of the harness fails the run
        failures.append(f"harness: {e!r}")
        say(f"  FAIL  harness: {e!r}")
    finally:
        for node in (app, ref):
            node.stop()
    say(f"\n== {'FAILED' if failures else 'PASSED'} in {time.time() - started:.0f} s")
    for f in failures:
        say(f"  - {f}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
