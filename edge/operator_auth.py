"""Who may read the edge's figures: the operator token (issue 21 item 2, docs/PROTOCOL.md §7).

Labels and per-device figures are as secret as the encrypted replies (a relay that POSTs a
captured frame, or reads `/v1/stats`, must learn nothing), so every endpoint but `/healthz` and
the frame itself needs an operator credential: a random token kept in a file of mode 0600 that
the edge creates (or is given), sent as ``Authorization: Bearer TOKEN``, or once as
``/?token=TOKEN`` to the dashboard, which turns it into an HttpOnly, SameSite=Strict cookie.
The file is refused the way ssh refuses a private key: not a regular file, or readable by group
or others. ``--no-operator-token`` opens the operator endpoints for a trusted LAN (logged).
"""
from __future__ import annotations

import atexit
import hmac
import os
import secrets
import shutil
import string
import tempfile
from dataclasses import dataclass

from codec.wire.files import read_user_file
from snn.errors import SnnError

COOKIE = "snn_operator"
MIN_TOKEN = 32
_TOKEN_CHARS = frozenset(string.ascii_letters + string.digits + "-_.~+/=")


@dataclass(frozen=True)
class OperatorAuth:
    """The operator credential an edge checks (`token` None: the logged opt-out, all open)."""

    token: str | None
    path: str | None

    @property
    def required(self) -> bool:
        return self.token is not None

    def allows(self, authorization: str | None = None, cookie: str | None = None) -> bool:
        """Whether a request that carries this Authorization header / operator cookie is the operator."""
        if self.token is None:
            return True
        offered = None
        if authorization and authorization[:7].lower() == "bearer ":
            offered = authorization[7:].strip()
        elif cookie:
            offered = cookie
        return offered is not None and self.matches(offered)

    def matches(self, offered: str) -> bool:
        return self.token is not None and hmac.compare_digest(offered.encode(), self.token.encode())


def read_token(path: str) -> str:
    """The token in `path`: a regular file, mode 0600 or stricter (codec.wire.files.read_user_file),
    one token of at least 32 characters; SnnError (one line, what to do) otherwise."""
    raw = read_user_file(path, 4096, "the operator token file", private=True)
    try:
        token = raw.decode("ascii").strip()
    except UnicodeDecodeError:
        token = ""
    if len(token) < MIN_TOKEN or not set(token) <= _TOKEN_CHARS:
        raise SnnError(f"the operator token file {path} must hold one token of at least {MIN_TOKEN} "
                       f"characters (letters, digits, -_.~+/=); remove it to have the edge make one")
    return token


def create_token_file(path: str) -> str:
    """Write a fresh random token to a new file `path` (mode 0600, never over an existing file)."""
    token = secrets.token_hex(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        raise SnnError(f"cannot create the operator token file {path}: {exc.strerror or exc}") from None
    try:
        os.write(fd, (token + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    return token


def load_or_create(path: str) -> OperatorAuth:
    """The token in `path`, made there first when the file does not exist."""
    if os.path.lexists(path):
        return OperatorAuth(read_token(path), path)
    return OperatorAuth(create_token_file(path), path)


def private_token() -> OperatorAuth:
    """A fresh token in a private temporary directory (mode 0700), removed at exit: for an edge
    without a keys file to put its token beside."""
    folder = tempfile.mkdtemp(prefix="snn-edge-")
    atexit.register(shutil.rmtree, folder, True)
    path = os.path.join(folder, "operator-token")
    return OperatorAuth(create_token_file(path), path)


def open_access() -> OperatorAuth:
    """The opt-out (`--no-operator-token`): every operator endpoint open."""
    return OperatorAuth(None, None)
