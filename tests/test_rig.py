"""The rig itself: a real nats-server that starts and answers."""

import socket


def test_nats_server_accepts_connections(nats_server):
    with socket.create_connection(("127.0.0.1", nats_server.port), timeout=5) as sock:
        assert sock.recv(4).startswith(b"INFO")
