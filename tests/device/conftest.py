import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "export"))


@pytest.fixture(scope="session")
def int8_encoder(tmp_path_factory):
    """An int8 encoder exported from the tiny test bundle, calibrated on real training images."""
    import onnx
    from fixture_bundle import TinyBundle

    from codec.datasets import load_dataset
    from export.onnx_export import bundle_metadata, export_encoder, set_metadata
    from export.quantize import quantize_encoder

    try:
        train = load_dataset("fmnist:train")
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"Fashion-MNIST not available: {exc}")
    bundle = TinyBundle()
    out = tmp_path_factory.mktemp("device_encoder")
    export_encoder(bundle, out / "encoder.onnx")
    quantize_encoder(out / "encoder.onnx", out / "encoder.int8.onnx", train.images[:64], method="minmax")
    model = onnx.load(str(out / "encoder.int8.onnx"))
    set_metadata(model, bundle_metadata(bundle, "int8-qdq-per-channel/minmax"))
    onnx.save_model(model, str(out / "encoder.int8.onnx"))
    return out / "encoder.int8.onnx"


class Responder:
    """A stand-in edge for client tests: authenticates each inference (v2, the all-zero key unless
    `key` is given) and answers its last fragment with an authenticated REPLY.

    label = the truth label sent (or 0); `drop_first` ignores the first transmission of every
    inference (same payload; the device must resend under a new counter); `error` answers with
    that ERROR code; `forged` answers with a REPLY under another key (the device must ignore it).
    """

    def __init__(self, url: str, drop_first: bool = False, error=None, key: bytes = bytes(16),
                 forged: bool = False, fp: bytes = bytes(4), payload_bytes: int = 37, busy_first: int = 0,
                 ber: float = 0.0):
        from channel.transports import open_transport

        self.fp, self.payload_bytes = fp, payload_bytes
        self.transport = open_transport(url, listen=True)
        self.drop_first = drop_first
        self.error = error
        self.key = key
        self.forged = forged
        self.seen: dict[bytes, int] = {}
        self.busy_first = busy_first          # answer BUSY (retry after 50 ms) to the first k transmissions
        self.ber = ber                        # the BER every REPLY reports
        self.plans: list[tuple[int, int]] = []  # (copies, fragments) of every last fragment received
        self.arrivals: dict[bytes, list[float]] = {}
        self.counters: list[int] = []
        self.frames = 0
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self):
        from dataclasses import dataclass

        from codec.wire.frame import ErrorCode, encode_error, encode_reply, parse_data
        from snn.errors import FrameError

        @dataclass
        class Peer:
            key: bytes
            fingerprint: bytes
            payload_bytes: int

        while not self._stop.is_set():
            got = self.transport.recv(timeout=0.05)
            if got is None:
                continue
            data, addr = got
            try:
                # the tiny test codec: any fingerprint, 37-byte payload (what the fixture exports)
                frame = parse_data(data, lambda dev: [Peer(self.key, self.fp, self.payload_bytes)],
                                   lambda dev, low: self.top & ~0xFFFF | low)
            except FrameError:
                continue
            self.frames += 1
            self.top = max(self.top, frame.counter)
            self.counters.append(frame.counter)
            if frame.frag_index != frame.frag_count - 1:
                continue
            self.plans.append((frame.copies, frame.frag_count))
            n = self.seen.get(frame.data, 0)
            self.seen[frame.data] = n + 1
            self.arrivals.setdefault(frame.data, []).append(time.monotonic())
            if self.drop_first and n == 0:
                continue
            args = dict(key=bytes(16) if self.forged else self.key, device_id=frame.device_id,
                        fingerprint=self.fp, counter=frame.counter, copies=frame.copies)
            if n < self.busy_first:
                out = encode_error(code=ErrorCode.BUSY, arg=5, **args)
            elif self.error is not None:
                out = encode_error(code=self.error, arg=1, **args)
            else:
                label = frame.truth if frame.truth is not None else 0
                out = encode_reply(label=label, confidence=0.9, ber=self.ber, **args)
            try:
                self.transport.send(out, addr)
            except (OSError, ValueError):
                pass

    top = 0

    def close(self):
        self._stop.set()
        self.thread.join(2)
        self.transport.close()


@pytest.fixture
def responder_factory(int8_encoder):
    from device.encoder import OnnxEncoder

    info = OnnxEncoder(int8_encoder).info
    made = []

    def make(url, **kw):
        r = Responder(url, fp=info.fingerprint, payload_bytes=info.payload_bytes, **kw)
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()
