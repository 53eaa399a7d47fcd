"""The device side of the edge tests: provisioned test keys, DATA frames under fresh counters, and
authenticated replies opened by the counter they answer. One module (not conftest, which pytest
may import twice), so every test and fixture shares one counter and one record of what was sent."""
from __future__ import annotations

import hashlib
import itertools
from pathlib import Path

from codec.wire.frame import encode_inference, parse_reply
from codec.wire.keys import DeviceKey, write_keys
from snn.errors import FrameError
from standin import FP_A, FP_B, payload_for  # noqa: F401

UNSERVED = bytes.fromhex("01020304")


def key_for(dev: int) -> bytes:
    return hashlib.sha256(b"snn-test-%d" % dev).digest()[:16]


# devices provisioned on the test edges: most for any served codec, 6 bound to FP_B, 5 to a codec
# the edges do not serve
KEYS = {dev: DeviceKey(dev, key_for(dev), FP_B if dev == 6 else UNSERVED if dev == 5 else None)
        for dev in [*range(1, 64), *range(500, 520), *range(700, 710), 900, *range(1000, 1300)]}
_COUNTER = itertools.count(1)
SENT: dict[int, tuple[int, int, bytes]] = {}   # counter low 16 bits -> (device, counter, fingerprint)


def write_test_keys(path: Path) -> Path:
    """The test keys file and, beside it, the empty replay state `snn keys new` makes."""
    from codec.wire.edge_state import EdgeState, edge_state_path, write_edge_state
    write_keys(path, list(KEYS.values()), force=True)
    write_edge_state(edge_state_path(path), EdgeState())
    return path


def empty_state() -> str:
    """A fresh, empty replay state file (no device has used a counter) in a temporary directory."""
    import tempfile

    from codec.wire.edge_state import EdgeState, write_edge_state
    path = Path(tempfile.mkdtemp(prefix="snn-test-")) / "keys.json.edge-state"
    write_edge_state(path, EdgeState())
    return str(path)


def data_frames(first: int, fp: bytes = FP_A, device: int = 7, key: bytes | None = None, counter: int | None = None,
                **kw) -> list[bytes]:
    """The DATA frames of one inference the stand-in labels `first`, under a fresh counter."""
    payload, _ = payload_for(first)
    counter = next(_COUNTER) if counter is None else counter
    SENT[counter & 0xFFFF] = (device, counter, fp)
    return encode_inference(payload, key=key_for(device) if key is None else key, device_id=device,
                            fingerprint=fp, counter=counter, **kw)


def data_frame(first: int, fp: bytes = FP_A, device: int = 7, **kw) -> bytes:
    return data_frames(first, fp, device, **kw)[0]


def open_reply(data: bytes):
    """The authenticated REPLY/ERROR of a frame this module sent (FrameError otherwise)."""
    low = []

    def remember(value):
        low.append(value)
        return SENT.get(value, (0, 0, b""))[1]

    try:
        return parse_reply(data, key=bytes(16), device_id=0, fingerprint=bytes(4), full_counter=remember)
    except FrameError:
        if not low or low[0] not in SENT:
            raise
    dev, counter, fp = SENT[low[0]]
    return parse_reply(data, key=key_for(dev), device_id=dev, fingerprint=fp, full_counter=lambda v: counter)


