"""The live-proxy section of bench/perf.py: mitmdump alone against mitmdump with the addon,
under load from wrk on loopback, side by side in alternating runs."""

import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = '{"email": "marie.dupont@example.fr", "event": "Order Completed", "total": 42.5}'
wrk.headers["Content-Type"] = "application/json"
request = function() return wrk.format(nil, "http://api.segment.io/v1/track") end
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
    output = subprocess.run(
        ["wrk", "-t", str(min(2, connections)), "-c", str(connections), "-d", f"{seconds}s",
         "--latency", "-s", str(script), f"http://127.0.0.1:{port}"],
        capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]

    def latency(percent: str) -> float:
        match = re.search(rf"{percent}%\s+([\d.]+)(us|ms|s)", output)
        assert match, output
        value, unit = float(match.group(1)), match.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    return {"rps": rps, "p50": latency("50"), "p99": latency("99")}


def bench_proxy(folder: Path, rounds: int, seconds: int, concurrencies: list[int]) -> list[str]:
    if not shutil.which("wrk"):
        return ["wrk is not installed (apt-get install wrk): proxy benchmark skipped."]
    script = folder / "post.lua"
    script.write_text(WRK_SCRIPT)
    offline = ["-s", str(ROOT / "tests" / "responder.py"), "--set", "connection_strategy=lazy",
               "--set", "flow_detail=0", "--listen-host", "127.0.0.1"]
    lines = [f"wrk on loopback, {seconds} s a run, medians of {rounds} alternating runs; the proxy "
             "answers every request itself (tests/responder.py). Requests: a JSON POST carrying a "
             "registry email to an http:// analytics host (so every request is a violation).", "",
             "| connections | mitmdump req/s | with addon req/s | ratio | p50 ms (bare / addon) | p99 ms (bare / addon) |",
             "|---|---|---|---|---|---|"]
    for connections in concurrencies:
        results: dict[str, list[dict[str, float]]] = {"bare": [], "addon": []}
        for _ in range(rounds):
            for kind in ("bare", "addon"):
                port = _free_port()
                if kind == "bare":
                    command = [str(BIN / "mitmdump"), *offline, "--listen-port", str(port)]
                else:
                    command = [str(BIN / "gdpr-audit"), "proxy", "--policy", str(ROOT / "policies"),
                               "--db", str(folder / "proxy.db"), "--listen-port", str(port), *offline]
                process = _start(command, port, folder / f"{kind}.log")
                try:
                    _wrk(port, connections, 1, script)  # warm-up
                    results[kind].append(_wrk(port, connections, seconds, script))
                finally:
                    process.terminate()
                    process.wait(timeout=60)
        med = {k: {m: statistics.median(r[m] for r in v) for m in ("rps", "p50", "p99")}
               for k, v in results.items()}
        lines.append(f"| {connections} | {med['bare']['rps']:.0f} | {med['addon']['rps']:.0f} | "
                     f"{med['addon']['rps'] / med['bare']['rps']:.2f} | "
                     f"{med['bare']['p50']:.1f} / {med['addon']['p50']:.1f} | "
                     f"{med['bare']['p99']:.1f} / {med['addon']['p99']:.1f} |")
    return lines


