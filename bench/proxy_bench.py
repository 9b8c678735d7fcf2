"""The live-proxy section of bench/perf.py: mitmdump alone against mitmdump with the addon in
log-only mode (the worker process audits and writes) and in enforce mode (judge processes
audit each request while it waits, the worker writes), under load from wrk on loopback, in
alternating runs. Every addon run also
checks that each request wrk completed reached the log: a fast proxy that drops audits is
not a win.

Alone: `python bench/proxy_bench.py [--rounds 3] [--seconds 10] [-c 1,8,32] [--kinds
bare,enforce]`, and
`--profile DIR` to record py-spy profiles of the proxy under load instead, `--contention` to
measure what a busy low-priority process on the other core costs bare mitmdump, `--hostile` the
latency of small clean requests while a hostile one is judged (SPEC 4's 1 s bound)."""

import argparse
import os
import re
import resource
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
KINDS = ("bare", "log-only", "mitmdump -s", "enforce")
"""bare mitmdump; `gdpr-audit proxy` (log-only, then --enforce); and mitmdump loading the
addon as a script (log-only), which is what SPEC's bar names."""

# Every request differs (a counter per wrk thread and connection), so no cache can make a
# repeated request free: a JSON POST with a registry-like email and order id, a GET with a
# query string and a cookie, and a form POST. All to third parties, most of them violations.
# wrk writes the proxy's address in the Host header: each request names its own, as a
# browser behind a proxy does (else every flow is audited as one to 127.0.0.1).
WRK_SCRIPT = """
local counter = 0
local thread_id = 0
local threads = {}
function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end
function init(args)
  thread_id = id
end
request = function()
  counter = counter + 1
  local n = thread_id * 10000000 + counter
  local kind = counter % 3
  if kind == 0 then
    local body = string.format('{"email": "client.%d@example.fr", "event": "Order Completed", ' ..
                               '"order_id": "ORD-%d", "total": %d.5}', n, n, n % 500)
    return wrk.format("POST", "http://api.segment.io/v1/track",
                      {["Host"] = "api.segment.io", ["Content-Type"] = "application/json"}, body)
  elseif kind == 1 then
    local path = string.format("/collect?v=2&tid=G-BENCH&cid=%d.1700000000&uid=u%d" ..
                               "&dl=https%%3A%%2F%%2Fshop.example%%2Fp%%2F%d&en=page_view", n, n, n)
    return wrk.format("GET", "http://www.google-analytics.com" .. path,
                      {["Host"] = "www.google-analytics.com",
                       ["Cookie"] = string.format("_ga=GA1.2.%d.1700000000; session=s%d", n, n)})
  else
    local body = string.format("email=marie.dupont%%2B%d%%40example.fr&phone=%%2B3361234%04d" ..
                               "&newsletter=1", n, n % 10000)
    return wrk.format("POST", "http://forms.tracker-widget.example/submit",
                      {["Host"] = "forms.tracker-widget.example",
                       ["Content-Type"] = "application/x-www-form-urlencoded"}, body)
  end
end
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _start(command: list[str], port: int, log: Path) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(command, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"proxy did not start: {log.read_text()[-1000:]}")


def _wrk(port: int, connections: int, seconds: int, script: Path) -> dict[str, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    output = subprocess.run(
        ["wrk", "-t", str(min(2, connections)), "-c", str(connections), "-d", f"{seconds}s",
         "--latency", "-s", str(script), f"http://127.0.0.1:{port}"],
        capture_output=True, text=True, check=True).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # (wrk's: the one child waited for)
    wrk_cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    count = int(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Socket errors: (.*)", output)
    if errors:
        raise RuntimeError(f"wrk socket errors: {errors.group(1)}")

    def latency(percent: str) -> float:
        match = re.search(rf"{percent}%\s+([\d.]+)(us|ms|s)", output)
        assert match, output
        value, unit = float(match.group(1)), match.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    return {"rps": rps, "p50": latency("50"), "p99": latency("99"), "requests": count,
            "wrk_ms": wrk_cpu * 1000 / count}


def _waited_seconds(pid: int) -> float:
    """Time the proxy's main thread spent ready to run but waiting for a CPU (schedstat):
    what another process on its core costs it, which its CPU time does not show."""
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[1]) / 1e9


def _children(pid: int) -> list[int]:
    return [int(child) for task in Path(f"/proc/{pid}/task").iterdir()
            for child in (task / "children").read_text().split()]


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _cpu_seconds(pid: int) -> float:
    """CPU time of the proxy's own process (all its threads, not the audit worker): under
    load from other programs, req/s swings, while CPU per request stays comparable."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _command(kind: str, port: int, db: Path) -> list[str]:
    offline = ["-s", str(ROOT / "tests" / "responder.py"), "--set", "connection_strategy=lazy",
               "--set", "flow_detail=0", "--listen-host", "127.0.0.1", "--listen-port", str(port)]
    if kind == "bare":
        return [str(BIN / "mitmdump"), *offline]
    if kind == "mitmdump -s":
        return [str(BIN / "mitmdump"), "-s", str(ROOT / "addon" / "gdpr_audit_addon.py"),
                "--set", f"gdpr_policy={ROOT / 'policies'}", "--set", f"gdpr_db={db}", *offline]
    enforce = ["--enforce"] if kind == "enforce" else []
    return [str(BIN / "gdpr-audit"), "proxy", "--policy", str(ROOT / "policies"), "--db", str(db),
            *enforce, *offline]


def _run(folder: Path, kind: str, connections: int, seconds: int,
         script: Path) -> dict[str, float]:
    """One measured run on a fresh proxy (and a fresh log, to count what reached it)."""
    port = _free_port()
    db = folder / f"proxy-{kind.replace(' ', '')}.db"
    for stale in folder.glob(f"{db.name}*"):
        stale.unlink()
    process = _start(_command(kind, port, db), port, folder / f"{kind.replace(' ', '')}.log")
    try:
        if kind != "bare":
            _worker_ready(db)
        warm = _wrk(port, connections, 1, script)
        # the audit worker, enforce's judges (and multiprocessing's tracker)
        children = _children(process.pid)
        judges = [child for child in children if _comm(child) == "gdpr-judge"]
        cpu, waited = _cpu_seconds(process.pid), _waited_seconds(process.pid)
        before = {child: _cpu_seconds(child) for child in children}
        result = _wrk(port, connections, seconds, script)
        result["cpu_ms"] = (_cpu_seconds(process.pid) - cpu) * 1000 / result["requests"]
        result["wait_ms"] = (_waited_seconds(process.pid) - waited) * 1000 / result["requests"]
        spent = {child: _cpu_seconds(child) - before[child] for child in children}
        result["judge_ms"] = sum(spent[c] for c in judges) * 1000 / result["requests"]
        result["worker_ms"] = (sum(spent[c] for c in children if c not in judges) * 1000
                               / result["requests"])
        result["all_ms"] = (result["cpu_ms"] + result["worker_ms"] + result["judge_ms"]
                            + result["wrk_ms"])
        stopping = time.monotonic()
    finally:
        process.terminate()  # SIGTERM: the addon drains the log on its way out
        process.wait(timeout=600)
    result["stop_s"] = time.monotonic() - stopping
    if kind != "bare":
        with sqlite3.connect(db) as conn:
            logged = conn.execute("select count(*) from flows").fetchone()[0]
        # wrk does not count the requests still in flight when it stops: the log may hold
        # up to `connections` more per wrk run, never fewer
        result["logged"] = logged
        result["sent"] = warm["requests"] + result["requests"]
    return result


def _worker_ready(db: Path, timeout: float = 120.0) -> None:
    """Until the audit worker has started its run: mitmdump listens before it loads a
    script's options, and the addon's start-up (the worker's imports, 2 s) would otherwise
    fall into the measured run."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with sqlite3.connect(db) as conn:
                if conn.execute("select count(*) from runs").fetchone()[0]:
                    time.sleep(0.5)  # the hook that started it returns to the event loop
                    return
        except sqlite3.Error:  # not created yet
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{db}: the audit worker did not start")


def handoff_cost(flows: int = 3000) -> tuple[float, float, float]:
    """Microseconds a flow on the event loop: the log-only hand-off (copy out what the audit
    reads, pickle it, as the loop does for a batch) against the inline audit it replaces, and
    what a judge spends handing its audit over to be written."""
    import pickle

    from mitmproxy.test import tflow, tutils

    from gdpr_audit.audit import Auditor
    from gdpr_audit.offload import audit_state, flow_state
    from gdpr_audit.policy import load_policy

    samples = []
    for n in range(flows):
        body = (f'{{"email": "client.{n}@example.fr", "event": "Order Completed", '
                f'"order_id": "ORD-{n}", "total": {n % 500}.5}}').encode()
        flow = tflow.tflow(req=tutils.treq(method=b"POST", content=body), resp=True)
        flow.request.url = "http://api.segment.io/v1/track"
        flow.request.headers["content-type"] = "application/json"
        flow.request.headers["cookie"] = f"_ga=GA1.2.{n}.1700000000"
        samples.append(flow)
    start = time.perf_counter()
    for flow in samples:
        pickle.dumps([flow_state(flow)], protocol=pickle.HIGHEST_PROTOCOL)
    handoff = (time.perf_counter() - start) / flows * 1e6
    auditor = Auditor(load_policy(str(ROOT / "policies"), None))
    start = time.perf_counter()
    audits = [auditor.audit(flow) for flow in samples[:300]]
    inline = (time.perf_counter() - start) / 300 * 1e6
    start = time.perf_counter()
    for audit in audits:
        pickle.dumps([audit_state(audit)], protocol=pickle.HIGHEST_PROTOCOL)
    return handoff, inline, (time.perf_counter() - start) / 300 * 1e6


def bench_proxy(folder: Path, rounds: int, seconds: int, concurrencies: list[int],
                kinds: tuple[str, ...] = KINDS) -> list[str]:
    if not shutil.which("wrk"):
        return ["wrk is not installed (apt-get install wrk): proxy benchmark skipped."]
    handoff, inline, record = handoff_cost()
    script = folder / "requests.lua"
    script.write_text(WRK_SCRIPT)
    lines = [f"wrk on loopback, {seconds} s a run after a 1 s warm-up, medians of {rounds} "
             "alternating runs (bare mitmdump; `gdpr-audit proxy`; `mitmdump -s "
             "addon/gdpr_audit_addon.py`, log-only like the former; `gdpr-audit proxy --enforce`); "
             "the proxy answers every request itself "
             "(tests/responder.py). Requests vary each time (a counter): a JSON POST with an email "
             "and order id, a GET with a query string and a cookie, a form POST, all over http:// "
             "to third parties, so nearly every one is a violation (in enforce mode, answered 451 "
             "by the proxy). 'logged' = flows in the log after a clean stop / requests wrk "
             "completed (>= 1.00: nothing lost; above 1 by the requests in flight at wrk's end). "
             "'CPU ms/req' is the proxy process's own CPU time per request (its child "
             "processes excluded): bare CPU / addon CPU is the throughput ratio to expect once "
             "the children have a core of their own, whatever else loads the machine. 'wait "
             "ms/req' is the time the proxy was ready to run but waited for a CPU (/proc "
             "schedstat), a request's share: what other processes on the machine cost it. "
             "'worker ms/req' is the worker's CPU time (log-only: it audits and writes, at idle "
             "priority, so it may run later, at the stop; enforce: it only writes), 'judges "
             "ms/req' enforce's judge processes' (they audit each request while it waits). "
             "'all CPU' adds the proxy's, its children's and wrk's: bare's / the addon's is the "
             "throughput ratio to expect when the machine has no CPU to spare (two cores, "
             "other work on them), an upper bound for log-only (its worker may run at the "
             "stop). "
             "'stop s' is the time from "
             "SIGTERM to exit: how long the log took to catch up. Load average at the start: "
             f"{os.getloadavg()[0]:.1f}.",
             "",
             f"Hand-off on the event loop in log-only mode: {handoff:.1f} us a flow (copy out "
             f"what the audit reads and pickle it), instead of {inline:.0f} us for auditing it "
             "inline (a JSON POST like wrk's). In enforce mode, a judge handing its audit to "
             f"the worker that writes it: {record:.1f} us.",
             "",
             *_header(kinds)]
    for connections in concurrencies:
        results: dict[str, list[dict[str, float]]] = {k: [] for k in kinds}
        for _ in range(rounds):
            for kind in kinds:
                results[kind].append(_run(folder, kind, connections, seconds, script))
        med = {k: {m: statistics.median(r[m] for r in v)
                   for m in ("rps", "p50", "p99", "cpu_ms", "wait_ms", "worker_ms", "judge_ms",
                             "wrk_ms", "all_ms", "stop_s")}
               for k, v in results.items()}
        logged = min((r["logged"] / r["sent"] for k in kinds[1:] for r in results[k]),
                     default=1.0)
        bare, addon = med["bare"], [k for k in kinds if k != "bare"]

        def each(metric: str, fmt: str, among: tuple[str, ...] | list[str] = kinds,
                 med: dict[str, dict[str, float]] = med) -> str:
            return " / ".join(format(med[k][metric], fmt) for k in among)

        lines.append(
            f"| {connections} | {bare['rps']:.0f} | "
            + "".join(f"{med[k]['rps']:.0f} | {med[k]['rps'] / bare['rps']:.2f} | "
                      for k in addon)
            + f"{each('p50', '.1f')} | {each('p99', '.1f')} | {each('cpu_ms', '.2f')} | "
            + "".join(f"{bare['cpu_ms'] / med[k]['cpu_ms']:.2f} | " for k in addon)
            + f"{each('wait_ms', '.2f')} | {each('worker_ms', '.2f', addon)} | "
            + (f"{med['enforce']['judge_ms']:.2f} | " if "enforce" in kinds else "")
            + f"{each('wrk_ms', '.2f')} | {each('all_ms', '.2f')} | "
            + "".join(f"{bare['all_ms'] / med[k]['all_ms']:.2f} | " for k in addon)
            + f"{each('stop_s', '.1f', addon)} | {logged:.2f} |")
    return lines


def _header(kinds: tuple[str, ...]) -> list[str]:
    """The table's header for these kinds (bare first: every ratio is to it)."""
    addon = [k for k in kinds if k != "bare"]
    every, some = " / ".join(kinds), " / ".join(addon)
    columns = (["connections", "bare req/s"] + [c for k in addon for c in (f"{k} req/s", "ratio")]
               + [f"p50 ms ({every})", f"p99 ms ({every})", f"CPU ms/req ({every})"]
               + [f"CPU ratio {k}" for k in addon]
               + [f"wait ms/req ({every})", f"worker ms/req ({some})"]
               + (["judges ms/req (enforce)"] if "enforce" in kinds else [])
               + [f"wrk ms/req ({every})", f"all CPU ms/req ({every})"]
               + [f"all CPU ratio {k}" for k in addon]
               + [f"stop s ({some})", "logged"])
    return ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]


def _audit_forever(priority: str) -> None:
    """The worker's CPU-hungry half without its log: audit JSON POSTs in a loop, at the
    worker's priority ("idle") or at plain nice 19 ("nice", what the worker used before)."""
    from mitmproxy.test import tflow, tutils

    from gdpr_audit.audit import Auditor
    from gdpr_audit.offload import WORKER_NICE, idle_priority
    from gdpr_audit.policy import load_policy

    if priority == "idle":
        idle_priority()
    else:
        os.nice(WORKER_NICE)
    auditor = Auditor(load_policy(str(ROOT / "policies"), None))
    n = 0
    while True:
        n += 1
        body = f'{{"email": "client.{n}@example.fr", "order_id": "ORD-{n}"}}'.encode()
        flow = tflow.tflow(req=tutils.treq(method=b"POST", content=body))
        flow.request.url = "http://api.segment.io/v1/track"
        flow.request.headers["content-type"] = "application/json"
        auditor.audit(flow)


def contention(folder: Path, rounds: int, seconds: int, connections: int) -> list[str]:
    """Bare mitmdump pinned to CPU 0, wrk pinned to CPU 1, alone or beside an audit loop
    pinned to CPU 1 at nice 19 or at the worker's idle priority: what a busy low-priority
    process on the *other* core costs the proxy (pinned so that every run puts the same work
    on the same cores; other programs on the machine still go where the scheduler sends
    them). Needs two CPUs."""
    script = folder / "requests.lua"
    script.write_text(WRK_SCRIPT)
    here = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {1})  # wrk and the audit loop inherit CPU 1
    results: dict[str, list[dict[str, float]]] = {k: [] for k in ("alone", "nice", "idle")}
    try:
        for _ in range(rounds):
            for kind in results:
                port = _free_port()
                proxy = _start(_command("bare", port, folder / "unused.db"), port,
                               folder / "contention.log")
                for task in Path(f"/proc/{proxy.pid}/task").iterdir():
                    os.sched_setaffinity(int(task.name), {0})
                loop = None
                if kind != "alone":
                    loop = subprocess.Popen([sys.executable, __file__, "--audit-forever", kind])
                    time.sleep(3)  # the policy loaded, the loop running
                try:
                    _wrk(port, connections, 1, script)
                    waited = _waited_seconds(proxy.pid)
                    result = _wrk(port, connections, seconds, script)
                    result["wait_ms"] = ((_waited_seconds(proxy.pid) - waited) * 1000
                                         / result["requests"])
                    results[kind].append(result)
                finally:
                    if loop is not None:
                        loop.kill()
                        loop.wait()
                    proxy.terminate()
                    proxy.wait(timeout=60)
    finally:
        os.sched_setaffinity(0, here)
    lines = [f"Bare mitmdump on CPU 0, wrk -c {connections} on CPU 1, {seconds} s runs, medians "
             f"of {rounds} alternating rounds, load average at the end "
             f"{os.getloadavg()[0]:.1f}: an audit loop on CPU 1 beside wrk.", "",
             "| on CPU 1 beside wrk | req/s | wait ms/req (proxy ready, no CPU) |", "|---|---|---|"]
    for kind, label in (("alone", "nothing"), ("nice", "audit loop at nice 19"),
                        ("idle", "audit loop at SCHED_IDLE (the worker now)")):
        lines.append(f"| {label} | {statistics.median(r['rps'] for r in results[kind]):.0f} | "
                     f"{statistics.median(r['wait_ms'] for r in results[kind]):.2f} |")
    return lines


def profile(folder: Path, out: Path, connections: int, seconds: int) -> None:
    """py-spy profiles (flame graph SVG and a raw collapsed file) of each kind under load."""
    script = folder / "requests.lua"
    script.write_text(WRK_SCRIPT)
    out.mkdir(parents=True, exist_ok=True)
    for kind in KINDS:
        port = _free_port()
        name = kind.replace(" ", "")
        process = _start(_command(kind, port, folder / f"profile-{name}.db"), port,
                         folder / f"{name}.log")
        try:
            _wrk(port, connections, 1, script)
            for fmt, suffix in (("raw", "txt"), ("flamegraph", "svg")):
                spy = subprocess.Popen([str(BIN / "py-spy"), "record", "--pid", str(process.pid),
                                        "--subprocesses", "--duration", str(seconds), "--format",
                                        fmt, "-o", str(out / f"{name}.{suffix}")],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                time.sleep(1)
                print(kind, fmt, _wrk(port, connections, seconds, script))
                spy.wait(timeout=120)
        finally:
            process.terminate()
            process.wait(timeout=600)


def _hostile_body() -> bytes:
    """200 values, each base64(gzip(1 MB of text)), each different (bench/body_cost.py's)."""
    import base64
    import gzip
    import json

    text = ("Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 20_000)[:(1 << 20) - 8]
    return json.dumps({f"v{n}": base64.b64encode(gzip.compress(f"{text}{n:08d}".encode(), 9))
                       .decode() for n in range(200)}).encode()


def _hostile_run(folder: Path, kind: str, seconds: int, body: bytes,
                 clean_connections: int = 4) -> dict[str, list[float]]:
    """One proxy: two connections send the hostile request back to back for `seconds`, while
    `clean_connections` others each send small clean GETs one after the other; the latency
    of every clean request and the answer time of every hostile one."""
    import http.client
    import threading

    port = _free_port()
    db = folder / f"hostile-{kind}.db"
    for stale in folder.glob(f"{db.name}*"):
        stale.unlink()
    process = _start(_command(kind, port, db), port, folder / f"hostile-{kind}.log")
    out: dict[str, list[float]] = {"clean": [], "hostile": [], "statuses": []}
    try:
        if kind != "bare":
            _worker_ready(db)
        stop = time.monotonic() + seconds

        def hostile() -> None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
            while time.monotonic() < stop:
                start = time.perf_counter()
                conn.request("POST", "http://collect.example-tracker.com/e", body,
                             {"Host": "collect.example-tracker.com",
                              "Content-Type": "application/json"})
                response = conn.getresponse()
                response.read()
                out["hostile"].append(time.perf_counter() - start)
                out["statuses"].append(response.status)

        def clean(index: int) -> None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
            count = 0
            while time.monotonic() < stop:
                start = time.perf_counter()
                conn.request("GET", f"http://cdn.example-static.com/app.js?v={index}.{count}",
                             headers={"Host": "cdn.example-static.com"})
                conn.getresponse().read()
                out["clean"].append(time.perf_counter() - start)
                count += 1

        threads = [threading.Thread(target=hostile) for _ in range(2)] + [
            threading.Thread(target=clean, args=(n,)) for n in range(clean_connections)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        process.terminate()
        process.wait(timeout=600)
    return out


def bench_hostile(folder: Path, rounds: int, seconds: int) -> list[str]:
    """SPEC 4: a request being judged never delays other connections by more than 1 s; bare
    mitmdump beside `gdpr-audit proxy --enforce`, in alternating rounds."""
    body = _hostile_body()
    runs: dict[str, list[dict[str, list[float]]]] = {"bare": [], "enforce": []}
    for _ in range(rounds):
        for kind in runs:
            runs[kind].append(_hostile_run(folder, kind, seconds, body))
    lines = [f"Hostile request: {len(body) / 1e3:.0f} KB, 200 values of base64(gzip(1 MB of "
             f"text)), sent back to back on 2 connections for {seconds} s while 4 other "
             f"connections send small clean GETs one after the other; {rounds} alternating "
             "rounds, medians of the rounds (max: the worst of all rounds).", "",
             "| proxy | clean requests/round | clean p50 ms | clean p99 ms | clean max ms "
             "| hostile requests/round | hostile answer p50 ms | hostile max ms | statuses |",
             "|---|---|---|---|---|---|---|---|---|"]
    for kind, results in runs.items():
        def per_round(key: str, pick: Callable[[list[float]], float],
                      results: list[dict[str, list[float]]] = results) -> float:
            return statistics.median(pick(r[key]) for r in results if r[key])

        def quantile(q: float) -> Callable[[list[float]], float]:
            return lambda values: sorted(values)[min(len(values) - 1, int(q * len(values)))]

        statuses = sorted({int(s) for r in results for s in r["statuses"]})
        lines.append(
            f"| {'mitmdump (bare)' if kind == 'bare' else 'gdpr-audit proxy --enforce'} "
            f"| {per_round('clean', len):.0f} | {per_round('clean', quantile(0.5)) * 1000:.1f} "
            f"| {per_round('clean', quantile(0.99)) * 1000:.1f} "
            f"| {max(max(r['clean']) for r in results) * 1000:.0f} "
            f"| {per_round('hostile', len):.0f} "
            f"| {per_round('hostile', quantile(0.5)) * 1000:.0f} "
            f"| {max(max(r['hostile']) for r in results) * 1000:.0f} "
            f"| {', '.join(map(str, statuses))} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("-c", "--connections", default="1,8,32")
    parser.add_argument("--profile", type=Path, help="write py-spy profiles here instead")
    parser.add_argument("--contention", action="store_true",
                        help="measure instead what a low-priority process on the other core "
                             "costs bare mitmdump (first of -c)")
    parser.add_argument("--audit-forever", choices=("idle", "nice"), help=argparse.SUPPRESS)
    parser.add_argument("--hostile", action="store_true",
                        help="measure instead the latency of small clean requests while a "
                             "hostile one is judged (bare and --enforce)")
    parser.add_argument("--kinds", default=",".join(KINDS),
                        help=f"which proxies to run side by side, bare first ({','.join(KINDS)})")
    args = parser.parse_args()
    kinds = tuple(args.kinds.split(","))
    if kinds[0] != "bare" or not set(kinds) <= set(KINDS):
        parser.error(f"--kinds: bare first, then some of {', '.join(KINDS[1:])}")
    if args.audit_forever:
        _audit_forever(args.audit_forever)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        if args.contention:
            print("\n".join(contention(Path(tmp), args.rounds, args.seconds,
                                       int(args.connections.split(",")[0]))))
            return
        if args.profile:
            profile(Path(tmp), args.profile, int(args.connections.split(",")[0]), args.seconds)
            return
        if args.hostile:
            print("\n".join(bench_hostile(Path(tmp), args.rounds, args.seconds)))
            return
        print("\n".join(bench_proxy(Path(tmp), args.rounds, args.seconds,
                                    [int(c) for c in args.connections.split(",")], kinds)))


if __name__ == "__main__":
    main()
