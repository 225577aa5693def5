"""BENCHMARKS.md and the terminal summary, rendered from a Run (pure functions)."""

from __future__ import annotations

import statistics

from bench.controlplane import PODS
from bench.model import Run
from bench.targets import (
    CLIENT_LAG_WARN_US,
    NOISE_WARN_PCT,
    QUIET_MIN_SHARE,
    RETRY_BUDGET,
    RETRY_LAG_US,
    RETRY_PCT,
    added,
    busy,
    checks,
    cpu_ms_per_1000,
    disturbance,
    lat,
    noise,
    ratio,
    tput,
)
from bench.units import mb, num, pct, rps, seconds, us

NOTES_BEGIN = "<!-- notes:begin (kept by make bench; edit freely) -->"
NOTES_END = "<!-- notes:end -->"
DEFAULT_NOTES = "_No notes yet. Text between these markers survives `make bench`._"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def throughput_table(run: Run) -> str:
    nginx, direct = run.get("nginx"), run.get("direct")
    rows = []
    for r in run.results:
        if r.error and not r.throughput:
            rows.append([f"`{r.name}`", "failed", *[""] * 7])
            continue
        t = r.throughput
        rows.append([
            f"`{r.name}`", rps(tput(r)), pct(ratio(tput(r), tput(direct))),
            pct(ratio(tput(r), tput(nginx))), str(t.errors) if t else "—",
            pct(busy(r)), num(cpu_ms_per_1000(r, "throughput")),
            f"{mb(r.rss_idle_kib)} → {mb(r.throughput_usage.rss_max_kib)}"
            if r.has_proxy and r.throughput_usage else "—",
            noise(r, "throughput", run.method),
        ])
    return _table(["setup", "req/s", "vs direct", "vs nginx", "errors", "proxy CPU busy",
                   "CPU ms / 1000 req", "RSS idle → load", "steal / others"], rows)


def latency_table(run: Run) -> str:
    direct = run.get("direct")
    rows = []
    for r in run.results:
        if r.error and not r.latency:
            rows.append([f"`{r.name}`", "failed", *[""] * 12])
            continue
        lt = r.latency or {}
        lag = lt.get("send_lag_us", {}).get("p99")
        rows.append([
            f"`{r.name}`", rps(lt.get("achieved_rps")),
            us(lat(r, "p50")), us(lat(r, "p90")), us(lat(r, "p99")), us(lat(r, "p99.9")),
            us(lat(r, "max")),
            us(added(r, direct, "p50")) if r is not direct else "—",
            us(added(r, direct, "p99")) if r is not direct else "—",
            _quiet(lt),
            num(cpu_ms_per_1000(r, "latency")),
            str(lt.get("errors", 0) + lt.get("timeouts", 0) + lt.get("unsent", 0)) if lt else "—",
            us(lag), noise(r, "latency", run.method),
        ])
    return _table(["setup", "req/s", "p50", "p90", "p99", "p99.9", "max", "added p50",
                   "added p99", "p99 without steal", "CPU ms / 1000 req", "errors",
                   "client lag p99", "steal / others"], rows)


def _quiet(lt: dict) -> str:
    """p99 of the requests no steal touched, and their share of all."""
    q = lt.get("quiet_us")
    return f"{us(q.get('p99'))} ({lt.get('quiet_share', 0.0):.0%})" if q else "—"


def checks_table(run: Run) -> str:
    return _table(["target", "measured", "limit", "result"],
                  [[c.what, c.measured, c.target,
                    f"**{c.result}**" if c.result.startswith(("PASS", "FAIL")) else c.result]
                   for c in checks(run)])


def control_table(run: Run) -> str:
    c = run.control
    assert c is not None

    def each(xs: list[float]) -> str:
        return ", ".join(seconds(x) for x in xs)

    def median(xs: list[float]) -> str:
        return f"median {seconds(statistics.median(xs))}" if xs else "—"

    return _table(["measurement", "value", "detail"], [
        ["`shoal run` → ready (one pod: proxy, certificate, app)", median(c.ready_s),
         f"each run: {each(c.ready_s)}"],
        ["control-plane RSS before the 50 pods", mb(c.rss_before_kib),
         f"{c.pods - PODS} running pods registered"],
        ["control-plane RSS with 50 more pods registered", mb(c.rss_pods_kib),
         f"{c.pods} pods in the registry"],
        [f"… and {c.watchers} destination watchers", mb(c.rss_watched_kib), ""],
        ["endpoint change → first watcher", median(c.first_s), f"each change: {each(c.first_s)}"],
        [f"endpoint change → all {c.watchers} watchers", median(c.all_s),
         f"each change: {each(c.all_s)}"],
    ])


def control_section(run: Run) -> str:
    c = run.control
    if c is None:
        return ""
    head = "## Control plane\n\n"
    if c.error:
        return head + f"Failed:\n\n```\n{c.error.strip()}\n```\n"
    return head + control_table(run) + "\n"


def errors_section(run: Run) -> str:
    failed = [r for r in run.results if r.error]
    if not failed:
        return ""
    body = "\n\n".join(f"- `{r.name}`:\n\n```\n{(r.error or '').strip()}\n```" for r in failed)
    return f"## Setups that failed\n\n{body}\n"


def profile_section(run: Run) -> str:
    head = "## Profile of shoal under load\n\n"
    if run.profile is None:
        why = run.profile_error or "not recorded in this run"
        return head + f"No profile: {why}.\n"
    p, m = run.profile, run.method
    intro = (f"py-spy sampled the `{run.profile_target}` proxy at 200 Hz for {m.profile_s:g} s "
             f"while wrk saturated it ({p.samples} samples), C frames included (`--native`): "
             "uvloop and libuv (`*.c`), httptools' llhttp, the libc calls that enter the "
             "kernel (`write`, `writev`, `read`; their time includes the kernel's work, "
             "loopback TCP delivery too), and the proxy's own modules compiled by mypyc "
             "(ADR 11), shown as `module.Class.method (compiled)`. `epoll_pwait` is the "
             "loop waiting for work. *Self* is time in the function itself, *total* "
             "includes its callees. Native sampling pauses the process for each sample, "
             "so it runs a little slower than in the tables above.\n\n")
    rows_self = [[f"`{e.function}`", f"{e.self_pct:.1f}%", f"{e.total_pct:.1f}%"]
                 for e in p.top_self]
    rows_total = [[f"`{e.function}`", f"{e.total_pct:.1f}%", f"{e.self_pct:.1f}%"]
                  for e in p.top_total]
    trunk = (f"\n\nFrames on nearly every stack ({', '.join(f'`{t}`' for t in p.trunk)}) "
             "are left out of the second table." if p.trunk else "")
    return (head + intro + "Top by self time:\n\n"
            + _table(["function", "self", "total"], rows_self)
            + "\n\nTop by total time:\n\n" + _table(["function", "total", "self"], rows_total)
            + trunk + "\n")


def method_section(run: Run) -> str:
    m = run.method
    titles = "\n".join(f"- `{r.name}`: {r.title}" for r in run.results)
    retried = ", ".join(m.retried) or "none"
    return f"""## Method

Setups, all on 127.0.0.1 with ports picked at run time, measured one after another:

{titles}

How:

- **Backend**: nginx, 1 worker, `return 200` with a fixed {m.body_bytes}-byte body
  ({m.response_bytes} bytes with headers), pinned to CPU {m.load_cpu}.
- **Proxies** pinned to CPU {m.proxy_cpu} with `taskset`: nginx `worker_processes 1`,
  up to 128 idle upstream connections; HAProxy `nbthread 1`, `http-reuse always`; each
  shoal proxy one process. In the meshed hop both shoal proxies share CPU {m.proxy_cpu}.
- **Load generators** pinned to CPU {m.load_cpu}, beside the backend.
- **Max throughput**: `wrk -t1 -c{m.wrk_connections}` (closed loop, keep-alive) for
  {m.throughput_s:g} s after a {m.warmup_s:g} s warm-up.
- **Latency**: an open-loop generator (`bench/openloop.py`) sends {m.rate:g} requests/s
  over {m.openloop_connections} keep-alive connections on a fixed schedule for
  {m.latency_s:g} s, after {m.latency_warmup_s:g} s unmeasured. Latency runs from each
  request's *scheduled* send time to its last response byte, so a stall is counted,
  not hidden (no coordinated omission). Debian has no wrk2, and h2load's `--rate`
  paces connections, not requests, hence a generator of our own. *Added* latency is
  the setup's percentile minus the direct path's.
- **p99 without steal**: the p99 of the requests that no hypervisor steal touched:
  /proc/stat is read every 100 ms, and a request is left out when steal was seen in
  the 100 ms slices its life overlaps or in the 50 ms before it (the queue a stall
  leaves takes that long to drain); the share of requests kept is shown beside it.
  Steal here comes in bursts of 10-100 ms several times a second, and one such burst
  queues a hundred requests, the whole p99 of a run. A p99 target that fails over every
  request is judged on these (**PASS (without steal)**) when both the setup and the
  direct baseline kept at least {QUIET_MIN_SHARE:.0%} of their requests.
- **Memory**: VmRSS of the proxy's processes (nginx: master + worker), idle after
  start, and the maximum sampled every 100 ms under load; MB = 10⁶ bytes.
- **CPU**: utime + stime of the proxy's processes over the measured interval, divided
  by the requests sent in it; *busy* is that CPU time over wall time (100% = one core).
- **Priority**: when run as root every process above runs at nice −20 (its session's
  autogroup too), so that other work on the machine disturbs the measurement less.
- **steal / others**: the largest share of a CPU the hypervisor gave to other guests
  during the interval, and the largest share of CPU {m.load_cpu} (or CPU {m.proxy_cpu}
  when a proxy runs there) used by processes outside the benchmark (both from
  /proc/stat). ⚠ marks a noisy row: steal above {NOISE_WARN_PCT["throughput"]:g}% at max
  throughput; at a fixed rate steal above {NOISE_WARN_PCT["latency"]:g}% (one 160 ms
  stall delays 1% of the requests, the whole p99) or a client lag p99 above
  {us(CLIENT_LAG_WARN_US)}. Others' share flags nothing
  (the benchmark runs at higher priority, so others mostly fill idle time) but tells
  how busy the machine was. Run again on a quiet machine before trusting a ⚠ row.
- **Disturbed points** (steal above {RETRY_PCT["throughput"]:g}% at max throughput;
  at a fixed rate steal above {RETRY_PCT["latency"]:g}% or a client lag p99 above
  {us(RETRY_LAG_US)}) are measured once more, up to {RETRY_BUDGET} per run, and the
  less disturbed result kept. Measured again in this run: {retried}.
- **errors** (latency table): non-200 answers, broken connections, and requests still
  unanswered, or never sent, 2 s after the end; those count in the percentiles with
  the latency they had reached.
- **client lag p99**: how late the open-loop client sent requests whose connection
  was free; it should be well under the latencies it reports.
- Closed-loop throughput through a fast proxy can be limited by CPU {m.load_cpu} (wrk and
  the backend) rather than by the proxy: *proxy CPU busy* well under 100% says so,
  and then the proxy could do more than the req/s shown.
{_mesh_method(run)}"""


def _mesh_method(run: Run) -> str:
    """Method bullets for the meshed hop with mTLS and the control plane, when run."""
    m, c = run.method, run.control
    out = ""
    if run.get("shoal-mesh-tls"):
        out += f"""- **`shoal-mesh-tls`**: a control plane (`shoal up`) in a temp `$SHOAL_HOME` and two
  pods started with `shoal run`: B's app is an nginx configured like the backend,
  A's an idle `http.server`. The load goes to A's outbound listener with
  `Host: backend.bench:80`, so each request crosses A's outbound, a pooled mTLS
  connection (A's metrics must show `tls="true"`) and B's inbound. Both proxies are
  moved to CPU {m.proxy_cpu} once ready; the control plane, supervisors and apps stay
  on CPU {m.load_cpu} and count as the load side. *Added* latency is against the
  direct path, like the others.
"""
    if c is not None:
        out += f"""- **Control plane** (the same one, after the setups): `shoal run` of a one-pod
  deployment (an `http.server` app) timed until it returns, i.e. until the pod's
  proxy holds a certificate and its app listens; {len(c.ready_s)} runs, unpinned. Then
  50 pods of one deployment are registered through the API supervisors use
  (`PUT /api/v1/namespaces/{{ns}}/pods/{{name}}`, plus a bootstrap token each; no
  process runs for them) and the control plane's VmRSS is read. Then 50 plain HTTP
  clients, standing in for proxies, watch that service (`GET
  /api/v1/destination/watch`, NDJSON), and one pod is reported not ready, then ready
  again, {len(c.all_s)} changes: the time from sending the report until every watcher
  has received a snapshot with the new endpoint set.
"""
    return out


def machine_section(run: Run) -> str:
    rows = "\n".join(f"- {k}: {v}" for k, v in run.machine.items())
    return f"## Machine\n\n{rows}\n"


def extract_notes(old: str | None) -> str:
    """The hand-written notes between the markers of a previous BENCHMARKS.md."""
    if old and NOTES_BEGIN in old and NOTES_END in old:
        inner = old.split(NOTES_BEGIN, 1)[1].split(NOTES_END, 1)[0].strip("\n")
        if inner.strip():
            return inner
    return DEFAULT_NOTES


def render(run: Run, notes: str) -> str:
    kind = "quick run (`--quick`): short points, rough numbers" if run.method.quick else "full run"
    parts = [
        "# Benchmarks\n",
        f"Written by `make bench` (`python -m bench.run`) on {run.started}, {kind}, "
        f"in {run.duration_s:.0f} s. The whole file is regenerated on every run except the "
        "Notes section at the end.\n",
        "## Targets\n\n" + checks_table(run) + "\n"
        + (f"\n{disturbance(run)}\n" if disturbance(run) else ""),
        "## Maximum throughput (wrk, keep-alive)\n\n" + throughput_table(run) + "\n",
        f"## Latency at a fixed {run.method.rate:g} requests/s (open loop)\n\n"
        + latency_table(run) + "\n",
        control_section(run),
        profile_section(run),
        errors_section(run),
        machine_section(run),
        method_section(run),
        f"## Notes\n\n{NOTES_BEGIN}\n{notes}\n{NOTES_END}\n",
    ]
    return "\n".join(p for p in parts if p)


def summary(run: Run) -> str:
    """What the terminal shows at the end of a run."""
    parts = ["Targets", checks_table(run), *([disturbance(run)] if disturbance(run) else []),
             "", "Maximum throughput", throughput_table(run), "",
             f"Latency at {run.method.rate:g} rps", latency_table(run)]
    if run.control is not None and not run.control.error:
        parts += ["", "Control plane", control_table(run)]
    elif run.control is not None:
        parts += ["", f"control-plane failed: {run.control.error}"]
    if run.profile:
        parts += ["", "Profile (top self time)"] + [
            f"  {e.self_pct:5.1f}%  {e.function}" for e in run.profile.top_self[:8]]
    elif run.profile_error:
        parts += ["", f"Profile: {run.profile_error}"]
    failed = [r for r in run.results if r.error]
    for r in failed:
        lines = (r.error or "?").strip().splitlines()
        parts += ["", f"{r.name} failed: {lines[0]}", *(f"  {x}" for x in lines[1:][-4:])]
    return "\n".join(parts)
