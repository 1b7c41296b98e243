"""NATS decentralized auth made in the test: operator, account and user JWTs, a creds file.

nats-server trusts an operator; the operator signs an account JWT, the
account signs a user JWT, and a client proves it is that user with the user
JWT and a signature of the server's nonce made with the user's nkey seed.
Both travel in a ``.creds`` file. ``write_operator_setup(directory)`` writes
a nats-server configuration (``operator``, ``resolver: MEMORY``,
``resolver_preload``) and a creds file of a user the server accepts.

The JWTs are built as nats-io/jwt (v2) builds them: base64url (no padding)
of a JSON header ``{"typ":"JWT","alg":"ed25519-nkey"}`` and of the claims,
signed with the issuer's ed25519 nkey. No PyPI package was needed beyond
``nkeys``, which the gateway itself needs for creds files.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import nkeys

_HEADER = {"typ": "JWT", "alg": "ed25519-nkey"}
NO_LIMIT = -1


@dataclass(frozen=True)
class Identity:
    """An nkey pair: the seed (secret, ``S...``) and its public key (``O...``, ``A...``, ``U...``)."""

    seed: bytes
    public_key: str

    def sign(self, data: bytes) -> bytes:
        return nkeys.from_seed(bytearray(self.seed)).sign(data)


def new_identity(prefix: int) -> Identity:
    """A fresh key pair of kind ``prefix`` (``nkeys.PREFIX_BYTE_OPERATOR`` and so on)."""
    seed = nkeys.encode_seed(os.urandom(32), prefix)
    return Identity(bytes(seed), nkeys.from_seed(bytearray(seed)).public_key.decode())


def encode_jwt(subject: str, name: str, issuer: Identity, nats: dict) -> str:
    """A JWT of ``nats`` claims about ``subject``, signed by ``issuer``."""
    claims = {"iat": int(time.time()), "iss": issuer.public_key, "name": name, "sub": subject}
    # The jti is a hash of the standard claims, as nats-io/jwt computes it.
    digest = hashlib.new("sha512_256", _json(claims)).digest()
    claims["jti"] = base64.b32encode(digest).decode().rstrip("=")
    claims["nats"] = nats
    signed = f"{_b64(_json(_HEADER))}.{_b64(_json(claims))}"
    return f"{signed}.{_b64(issuer.sign(signed.encode()))}"


def operator_jwt(operator: Identity) -> str:
    return encode_jwt(operator.public_key, "test-operator", operator, {"type": "operator", "version": 2})


def account_jwt(account: Identity, operator: Identity) -> str:
    limits = {"subs": NO_LIMIT, "data": NO_LIMIT, "payload": NO_LIMIT, "imports": NO_LIMIT,
              "exports": NO_LIMIT, "wildcards": True, "conn": NO_LIMIT, "leaf": NO_LIMIT}
    return encode_jwt(account.public_key, "test-account", operator,
                      {"limits": limits, "default_permissions": {"pub": {}, "sub": {}},
                       "type": "account", "version": 2})


def user_jwt(user: Identity, account: Identity) -> str:
    return encode_jwt(user.public_key, "test-user", account,
                      {"pub": {}, "sub": {}, "subs": NO_LIMIT, "data": NO_LIMIT, "payload": NO_LIMIT,
                       "type": "user", "version": 2})


def creds_text(jwt: str, seed: bytes) -> str:
    """A ``.creds`` file as ``nsc`` writes it."""
    return (
        "-----BEGIN NATS USER JWT-----\n"
        f"{jwt}\n"
        "------END NATS USER JWT------\n\n"
        "************************* IMPORTANT *************************\n"
        "NKEY Seed printed below can be used to sign and prove identity.\n"
        "NKEYs are sensitive and should be treated as secrets.\n\n"
        "-----BEGIN USER NKEY SEED-----\n"
        f"{seed.decode()}\n"
        "------END USER NKEY SEED------\n\n"
        "*************************************************************\n"
    )


@dataclass(frozen=True)
class OperatorSetup:
    """A nats-server configuration trusting one operator, and creds of a user it accepts."""

    config: str
    creds: str
    operator: Identity
    account: Identity

    def nats_server_args(self) -> tuple[str, ...]:
        return ("-c", self.config)

    def write_creds(self, path: Path, account: Identity | None = None) -> str:
        """Creds of a new user signed by ``account`` (default: the trusted one); the path."""
        return write_user_creds(path, account or self.account)


def write_user_creds(path: Path, account: Identity) -> str:
    """A creds file of a new user of ``account``; its path."""
    user = new_identity(nkeys.PREFIX_BYTE_USER)
    path.write_text(creds_text(user_jwt(user, account), user.seed))
    return str(path)


def write_operator_setup(directory: Path) -> OperatorSetup:
    """Operator, account and user; ``nats.conf`` and ``user.creds`` in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    operator = new_identity(nkeys.PREFIX_BYTE_OPERATOR)
    account = new_identity(nkeys.PREFIX_BYTE_ACCOUNT)
    config = directory / "nats.conf"
    config.write_text(
        f'operator: "{operator_jwt(operator)}"\n'
        "resolver: MEMORY\n"
        "resolver_preload: {\n"
        f'  {account.public_key}: "{account_jwt(account, operator)}"\n'
        "}\n"
    )
    return OperatorSetup(str(config), write_user_creds(directory / "user.creds", account), operator, account)


def _json(value: dict) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")
