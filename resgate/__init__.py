"""A RES protocol gateway on Twisted: a drop-in Resgate for Python shops."""

__version__ = "0.1.0"

#: The RES protocol version this gateway implements.
PROTOCOL_VERSION = "1.2.3"
