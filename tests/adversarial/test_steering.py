"""Issue 21 item 9, "the payload can be steered, not just noised", against a real `snn edge serve`
(shipped bundle, keyed, loopback): an attacker who knows a device's plaintext XORs bits into the
ciphertext of a captured frame (AES-CTR: the edge then decrypts the payload of the attacker's
choice) and sends it on. What must hold (docs/PROTOCOL.md §4.6): in the normal mode that works
and the threat model says so; for a device provisioned in payload-integrity mode (`snn keys add
--integrity`) every steered frame is refused unanswered, while its clean frames are answered as
the normal device's are.

`pytest -s` prints the figures. The bench with more victims and the mode's cost on a noisy link:
`python -m bench.steering`.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from attack_edge import DEVICES, Device, Edge, key_for  # noqa: E402

from codec.wire.edge_state import EdgeState, edge_state_path, write_edge_state  # noqa: E402
from codec.wire.frame import Reply, encode_inference  # noqa: E402
from codec.wire.keys import DeviceKey, write_keys  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
ENCODER = ROOT / "codec" / "zoo" / "fmnist_default.int8.onnx"
NORMAL, SECURE = 1, 2
VICTIMS = 24


@pytest.fixture(scope="module")
def edge(tmp_path_factory):
    folder = tmp_path_factory.mktemp("steer")
    keys = folder / "keys.json"
    write_keys(keys, [DeviceKey(d, key_for(d), None, integrity=d == SECURE) for d in DEVICES], force=True)
    write_edge_state(edge_state_path(keys), EdgeState())
    server = Edge(folder).start()
    yield server
    server.stop()


class _Device(Device):
    """attack_edge's device, framing in payload-integrity mode when provisioned so."""

    def __init__(self, edge: Edge, device_id: int, integrity: bool) -> None:
        super().__init__(edge, device_id, first_counter=10)
        self.integrity = integrity

    def frames(self, mtu: int = 1400, long_counter: bool = False, counter: int | None = None) -> list[bytes]:
        c = self.counter if counter is None else counter
        self.counter += counter is None
        self.pending[c & 0xFFFF] = c
        return encode_inference(self.payload, key=self.key, device_id=self.id, fingerprint=self.fp, counter=c,
                                mtu=mtu, long_counter=long_counter, integrity=self.integrity)


def _answer(dev: Device, payload: bytes, flip: bytes | None = None) -> list:
    """Send one frame of `payload` (its ciphertext XORed with `flip`, as the attacker on the link
    does: the payload is the frame's tail, §3.2) and return what authenticated came back."""
    dev.payload = payload
    frame = bytearray(dev.frame())
    if flip is not None:
        tail = len(frame) - len(payload)
        frame[tail:] = bytes(a ^ b for a, b in zip(frame[tail:], flip))
    dev.send(bytes(frame))
    return dev.replies(want=1, timeout=1.5)


def _labels(dev: Device, payloads: list[bytes]) -> list[int | None]:
    out = []
    for p in payloads:
        got = _answer(dev, p)
        out.append(got[0].label if got and isinstance(got[0], Reply) else None)
    return out


def test_item9_steering_works_in_the_normal_mode_and_integrity_mode_refuses_every_steered_frame(edge):
    from codec.datasets import load_dataset
    from device.encoder import OnnxEncoder

    encoder = OnnxEncoder(ENCODER)
    test = load_dataset("fmnist:test")
    rng = np.random.default_rng(21)
    idx = rng.choice(len(test.labels), 200, replace=False)
    payloads = [encoder.pack(s) for s in encoder.encode(test.images[idx])]
    normal, secure = _Device(edge, NORMAL, False), _Device(edge, SECURE, True)
    try:
        # the attacker's library: payloads the edge answers with each class (the public bundle
        # gives them offline; here the attacker's own device asks the edge)
        library, victims = payloads[:120], payloads[120:120 + VICTIMS]
        lib_labels = _labels(normal, library)
        exemplar = {}
        for p, label in zip(library, lib_labels):
            exemplar.setdefault(label, p)
        clean = _labels(normal, victims)
        assert _labels(secure, victims) == clean      # integrity mode answers clean frames alike
        before = edge.rejects("auth", "unverified", "rate_limited")
        steered = refused_back = 0
        for i, (victim, label) in enumerate(zip(victims, clean)):
            target = sorted(c for c in exemplar if c != label)[i % (len(exemplar) - 1)]
            flip = bytes(a ^ b for a, b in zip(victim, exemplar[target]))
            got = _answer(normal, victim, flip)
            steered += bool(got) and isinstance(got[0], Reply) and got[0].label == target
            refused_back += len(_answer(secure, victim, flip))
        refused = edge.rejects("auth", "unverified", "rate_limited") - before
        print(f"\nitem 9: {len(exemplar)} target classes in the library; normal mode steered "
              f"{steered}/{VICTIMS} to the attacker's class; integrity mode: {refused:.0f}/{VICTIMS} refused "
              f"(auth), {refused_back} datagrams back")
        assert len(exemplar) >= 5 and None not in clean
        assert steered >= VICTIMS * 0.9                # the attack §4.6 states is real
        assert refused_back == 0 and refused == VICTIMS
        assert _labels(secure, victims[:3]) == clean[:3]   # and the device is still served
    finally:
        normal.close()
        secure.close()
