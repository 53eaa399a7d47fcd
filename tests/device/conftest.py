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
    """A stand-in edge for client tests: answers each complete inference with a REPLY frame.

    label = the truth label in the header (or 0); `drop_first` ignores the first transmission of
    every sequence number (so the device must resend); `error` answers with that ERROR code.
    """

    def __init__(self, url: str, drop_first: bool = False, error=None, damaged_first: bool = False,
                 busy_first: int = 0):
        from channel.transports import open_transport

        self.transport = open_transport(url, listen=True)
        self.drop_first = drop_first
        self.error = error
        self.damaged_first = damaged_first
        self.busy_first = busy_first          # answer BUSY to the first k transmissions of each seq
        self.arrivals: dict[int, list[float]] = {}
        self.seen: dict[int, int] = {}
        self.frames = 0
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self):
        from codec.wire.frame import ErrorCode, encode_error, encode_reply, parse_frame
        from snn.errors import FrameError

        while not self._stop.is_set():
            got = self.transport.recv(timeout=0.05)
            if got is None:
                continue
            data, addr = got
            try:
                frame = parse_frame(data)
            except FrameError:
                continue
            self.frames += 1
            if frame.frag_index != frame.frag_count - 1:
                continue
            n = self.seen.get(frame.seq, 0)
            self.seen[frame.seq] = n + 1
            self.arrivals.setdefault(frame.seq, []).append(time.monotonic())
            if n < self.busy_first:
                self.transport.send(encode_error(frame.fingerprint, frame.device_id, frame.seq,
                                                 ErrorCode.BUSY, "overloaded"), addr)
                continue
            if self.drop_first and n == 0:
                continue
            if self.damaged_first and n == 0:  # as if the header arrived with device id bit 0 flipped
                out = encode_error(frame.fingerprint, frame.device_id ^ 1, frame.seq, ErrorCode.BAD_FRAME,
                                   "header damaged beyond repair")
                self.transport.send(out, addr)
                continue
            if self.error is not None:
                out = encode_error(frame.fingerprint, frame.device_id, frame.seq, self.error, "test refusal")
            else:
                label = frame.truth if frame.truth is not None else 0
                out = encode_reply(frame.fingerprint, frame.device_id, frame.seq, label, 0.9, 0.0)
            try:
                self.transport.send(out, addr)
            except (OSError, ValueError):
                pass

    def close(self):
        self._stop.set()
        self.thread.join(2)
        self.transport.close()


@pytest.fixture
def responder_factory():
    made = []

    def make(url, **kw):
        r = Responder(url, **kw)
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()
