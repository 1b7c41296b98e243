"""examples/embedded/app.tac: a host application with its own endpoint and a gateway.

The example runs as its README says, ``twistd -ny examples/embedded/app.tac``,
in a process of its own; the test talks to both the host's endpoint and the
gateway, and checks the gateway's failure never takes the host down.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sysconfig
import tempfile
from pathlib import Path

import pytest_twisted

from tests.rig.aio import eventually, sleep
from tests.rig.http import http_request
from tests.rig.process import free_port, refuses_connections
from tests.rig.resources import client_data, connect_client, respond_get
from tests.rig.service import FakeService

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "examples" / "embedded" / "app.tac"
TWISTD = os.path.join(sysconfig.get_path("scripts"), "twistd")
START_WAIT = 20.0


class HostProcess:
    """``twistd --pidfile= -ny app.tac`` with the example's settings in its environment."""

    def __init__(self, **settings: str) -> None:
        self.host_port = free_port()
        self.gateway_port = free_port()
        env = {**os.environ, "HOST_PORT": str(self.host_port),
               "RESGATE_PORT": str(self.gateway_port), **settings}
        self._output = tempfile.NamedTemporaryFile(prefix="embedded-", suffix=".log")
        self.process = subprocess.Popen([TWISTD, "--pidfile=", "-ny", str(APP)], cwd=ROOT, env=env,
                                        stdout=self._output, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL)

    def output(self) -> str:
        return Path(self._output.name).read_text(errors="replace")

    def logged(self, pattern: str) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"the host exited with {self.process.returncode}:\n{self.output()}")
        return re.search(pattern, self.output()) is not None

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=15)

    def cleanup(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=5)
        self._output.close()


@pytest_twisted.ensureDeferred
async def test_host_endpoint_and_gateway_both_serve(nats_server):
    host = HostProcess(NATS_URL=nats_server.url)
    service = await FakeService(nats_server.url).start()
    service.on("access.test.model", lambda r: r.respond_result({"get": True}))
    service.on("get.test.model", respond_get)
    client = None
    try:
        await eventually(lambda: host.logged(rf"Listening on 127\.0\.0\.1:{host.gateway_port}"),
                         START_WAIT)
        status = await http_request("GET", f"http://127.0.0.1:{host.host_port}/status")
        assert status.status == 200
        assert status.json() == {"host": "ok", "gateway": {"running": True, "port": host.gateway_port}}

        over_http = await http_request("GET", f"http://127.0.0.1:{host.gateway_port}/api/test/model")
        assert (over_http.status, over_http.json()) == (200, client_data("test.model"))
        # The host's own resservice service, through its own gateway.
        await eventually(lambda: host.logged("RES service 'host' serving"), START_WAIT)
        greeting = await http_request("GET", f"http://127.0.0.1:{host.gateway_port}/api/host/greeting")
        assert (greeting.status, greeting.json()) == (200, {"message": "Hello from the host"})
        client = await connect_client(f"ws://127.0.0.1:{host.gateway_port}/")
        response = await client.request("subscribe.host.greeting")
        assert response["result"] == {"models": {"host.greeting": {"message": "Hello from the host"}}}
        response = await client.request("call.host.greeting.set", {"message": "Hi"})
        assert await client.next_message() == {"event": "host.greeting.change", "data": {"values": {"message": "Hi"}}}
        response = await client.request("subscribe.test.model")
        assert response["result"] == {"models": {"test.model": client_data("test.model")}}
        service.event("test.model", "change", {"values": {"int": 43}})
        assert await client.next_message() == {"event": "test.model.change",
                                               "data": {"values": {"int": 43}}}
        await client.close()
        client = None

        # twistd re-raises SIGTERM once the whole tree has stopped, the gateway first.
        assert host.stop() == -signal.SIGTERM
        assert refuses_connections(host.host_port) and refuses_connections(host.gateway_port)
        output = host.output()
        assert output.index("Server stopped") < output.index("Server Shut Down")
        assert "Traceback" not in output
    finally:
        if client is not None:
            await client.close()
        await service.stop()
        host.cleanup()


@pytest_twisted.ensureDeferred
async def test_a_gateway_without_nats_leaves_the_host_serving():
    host = HostProcess(NATS_URL=f"nats://127.0.0.1:{free_port()}")
    try:
        await eventually(lambda: host.logged("Failed to start server: cannot connect to NATS"),
                         START_WAIT)
        status = await http_request("GET", f"http://127.0.0.1:{host.host_port}/status")
        assert status.json() == {"host": "ok", "gateway": {"running": False, "port": None}}
        assert refuses_connections(host.gateway_port)
        await sleep(0.2)
        assert host.process.poll() is None, host.output()
    finally:
        host.cleanup()

