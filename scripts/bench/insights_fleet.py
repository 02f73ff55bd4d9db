#!/usr/bin/env python3
"""Fleet generator and timer for scripts/bench/insights.sh (issue 13).

load:    POSTs N installations x W weekly Service Ping submissions through the ingest path
         (/usage_data), each a trimmed GitLab 18.9 payload (everything but redis_hll_counters:
         about 1,900 numeric leaves), with its own uuid, hostname, version, edition and
         recorded_at; plus version checks (/check.json with a Referer) for each installation.
time:    warm p50/p95 of every insights page (logged in) and API endpoint (token); with
         --warm 0 --samples 1, the first ask of each.
"""
import argparse, concurrent.futures as cf, copy, json, random, re, statistics, sys, time
import base64, urllib.request, urllib.parse, urllib.error, http.cookiejar, datetime as dt

EDITIONS = ["CE", "EE Free", "EE", "EES", "EEP", "EEU"]
VERSIONS = ["17.9.3", "17.10.1", "17.11.2", "18.0.1", "18.1.0", "18.2.4", "18.3.1", "18.4.0",
            "18.5.2", "18.6.1", "18.7.0", "18.8.3", "18.9.0"]


def payload_for(template, i, week, weeks, start):
    rnd = random.Random(i * 1000 + week)
    p = copy.deepcopy(template)
    p["uuid"] = f"bench-{i:06d}"
    p["unique_instance_id"] = f"bench-uid-{i:06d}"
    p["hostname"] = f"gitlab-{i:06d}.bench.example"
    v = VERSIONS[min(len(VERSIONS) - 1, (i % 8) + week // 3)]
    p["version"] = v
    p["edition"] = EDITIONS[i % len(EDITIONS)]
    p["recorded_at"] = (start + dt.timedelta(weeks=week, hours=i % 24)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    p["active_user_count"] = 10 + (i * 7) % 500 + week

    def walk(node, depth=0):
        if isinstance(node, dict):
            for k, val in node.items():
                if isinstance(val, bool):
                    continue
                if isinstance(val, (int, float)) and val >= 0:
                    # running totals grow week by week; windowed values wander
                    node[k] = int(val * (1 + i % 5) + week * (i % 7) + rnd.randint(0, 3))
                else:
                    walk(val, depth + 1)
    walk(p.get("counts", {}))
    walk(p.get("usage_activity_by_stage", {}))
    walk(p.get("usage_activity_by_stage_monthly", {}))
    return json.dumps(p).encode()


def post(url, body, headers):
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    for attempt in range(20):
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return r.status
        except urllib.error.HTTPError as e:
            if e.code == 503:
                time.sleep(0.2 * (attempt + 1))
                continue
            raise
    raise RuntimeError("503 twenty times")


def load(args):
    template = json.load(open(args.payload))
    template.pop("redis_hll_counters", None)
    # Week 0 starts 12 weeks ago; --offset-weeks adds later weeks to an existing fleet.
    start = dt.datetime.utcnow() - dt.timedelta(weeks=12, days=1)
    first = args.first_installation
    jobs = [(i, w + args.offset_weeks) for w in range(args.weeks)
            for i in range(first, first + args.installations)]
    t0 = time.time()

    def one(job):
        i, w = job
        post(args.url + "/usage_data", payload_for(template, i, w, args.weeks, start),
             {"Content-Type": "application/json"})
        if w == args.weeks - 1 + args.offset_weeks:
            v = VERSIONS[min(len(VERSIONS) - 1, (i % 8) + w // 3)]
            # /check.json takes the base64 gitlab_info like GitLab sends it
            info = base64.b64encode(json.dumps({"version": v}).encode()).decode()
            req = urllib.request.Request(args.url + "/check.json?gitlab_info=" + urllib.parse.quote(info),
                                         headers={"Referer": f"https://gitlab-{i:06d}.bench.example/admin"})
            urllib.request.urlopen(req, timeout=30).read()
    with cf.ThreadPoolExecutor(args.senders) as ex:
        for n, _ in enumerate(ex.map(one, jobs), 1):
            if n % 1000 == 0:
                print(f"  {n}/{len(jobs)} posted, {n / (time.time() - t0):.1f}/s", file=sys.stderr)
    print(f"loaded {len(jobs)} submissions in {time.time() - t0:.0f} s")


def pct(values, p):
    s = sorted(values)
    return s[max(0, -(-p * len(s) // 100) - 1)]


def timing(args):
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    page = opener.open(args.url + "/login").read().decode()
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    opener.open(args.url + "/login", urllib.parse.urlencode(
        {"username": args.user, "password": args.password, "csrf_token": csrf}).encode()).read()
    key = "counts.issues"
    today = dt.date.today()
    frm = (today - dt.timedelta(weeks=args.weeks + 2)).isoformat()
    api = [
        f"/api/v1/insights/installations?period=week&from={frm}",
        f"/api/v1/insights/installations?period=month&by=tier",
        f"/api/v1/insights/metrics/{key}?period=week&by=tier&from={frm}",
        f"/api/v1/insights/metrics?q=counts&per_page=100",
        f"/api/v1/insights/metrics/{key}/top?period=week",
        f"/api/v1/insights/versions?period=week&from={frm}",
        f"/api/v1/insights/backport?days=28",
        f"/api/v1/insights/vulnerable?days=28",
        f"/api/v1/insights/installation?uuid=bench-000007&hostname=gitlab-000007.bench.example",
        f"/api/v1/insights/metrics/{key}?period=month&by=edition",
        f"/api/v1/insights/backport?days=28&affected_from=18.2.0&affected_to=18.6.9",
        f"/api/v1/insights/overview/activity?period=week&from={frm}",
        f"/api/v1/insights/overview/sources?period=week&from={frm}",
        f"/api/v1/insights/versions/penetration?period=week&from={frm}",
        f"/api/v1/insights/versions/behind?period=week&from={frm}",
        f"/api/v1/insights/versions/days_behind?period=week&from={frm}",
        f"/api/v1/insights/versions/vulnerable_share?period=week&from={frm}",
        f"/api/v1/insights/versions/sources?period=week&from={frm}",
        f"/api/v1/insights/licences/utilisation?period=week&from={frm}",
        f"/api/v1/insights/licences?list=expiring&within=90",
    ]
    pages = [
        "/console/insights", "/console/insights/versions", "/console/insights/backport",
        "/console/insights/metrics", f"/console/insights/metrics?key={key}&period=week",
        "/console/insights/vulnerable", "/console/insights/licences",
        "/console/insights/installation?uuid=bench-000007&hostname=gitlab-000007.bench.example",
    ]
    rows = []
    for path in api + pages:
        is_page = path.startswith("/console")
        def get():
            req = urllib.request.Request(args.url + path, headers={} if is_page else {"PRIVATE-TOKEN": args.token})
            t = time.perf_counter()
            with (opener.open(req, timeout=120) if is_page else urllib.request.urlopen(req, timeout=120)) as r:
                r.read()
                assert r.status == 200, path
            return (time.perf_counter() - t) * 1000
        for _ in range(args.warm):
            get()
        samples = [get() for _ in range(args.samples)]
        rows.append((path, pct(samples, 50), pct(samples, 95)))
        print(f"| `{path}` | {pct(samples, 50):.1f} | {pct(samples, 95):.1f} |", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["load", "time"])
    ap.add_argument("--url", required=True)
    ap.add_argument("--installations", type=int, default=500)
    ap.add_argument("--weeks", type=int, default=12)
    ap.add_argument("--offset-weeks", type=int, default=0)
    ap.add_argument("--first-installation", type=int, default=0)
    ap.add_argument("--senders", type=int, default=8)
    ap.add_argument("--payload", default="tests/fixtures/payload_18.9.0_generated.json")
    ap.add_argument("--token", default="")
    ap.add_argument("--user", default="bench")
    ap.add_argument("--password", default="bench-password-1")
    ap.add_argument("--warm", type=int, default=3)
    ap.add_argument("--samples", type=int, default=20)
    args = ap.parse_args()
    load(args) if args.mode == "load" else timing(args)


if __name__ == "__main__":
    main()
