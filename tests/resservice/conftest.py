import logging

import pytest

from resservice.testing import Session


@pytest.fixture(params=["memory", "nats"])
def open_session(request):
    """``open_session(service)``: a testing Session over the in-memory bus, then over the real nats-server.

    Every scenario that takes it runs on both.
    """
    url = request.getfixturevalue("nats_server").url if request.param == "nats" else None

    def open_(service, **options):
        return Session(service, nats_url=url, **options)

    return open_


class Records(logging.Handler):
    """The records logged by resservice during a test."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    @property
    def errors(self) -> list[str]:
        return [r.getMessage() for r in self.records if r.levelno >= logging.ERROR]


@pytest.fixture
def service_log():
    """What resservice logs during the test; a test that expects no error checks ``errors == []``."""
    logger = logging.getLogger("resservice")
    handler = Records()
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)
