import sys
import threading
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


KEY = bytes(range(16))
DEVICE_ID = 1


class Responder:
    """A stand-in edge for client tests: answers each complete inference with an authenticated
    REPLY under the test key (`KEY`, device `DEVICE_ID`).

    label = the truth label in the header (or 0); `drop_first` ignores the first N transmissions
    (so the device must resend); `error` answers with that ERROR code; `forge` answers first with
    a REPLY under another key (which the device must ignore); `twice` sends every reply twice.
    """

    def __init__(self, url: str, drop_first: int = 0, error=None, forge: bool = False, twice: bool = False):
        from channel.transports import open_transport
        from codec.wire.crypto import DeviceKeys

        self.transport = open_transport(url, listen=True)
        self.keys = DeviceKeys(DEVICE_ID, KEY)
        self.drop_first = int(drop_first)
        self.error = error
        self.forge = forge
        self.twice = twice
        self.counters: list[int] = []
        self.frames = 0
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self):
        from codec.wire.crypto import DeviceKeys
        from codec.wire.frame import encode_error, encode_reply, read_header, verify
        from snn.errors import FrameError

        last = -1
        while not self._stop.is_set():
            got = self.transport.recv(timeout=0.05)
            if got is None:
                continue
            data, addr = got
            try:
                head = read_header(data)
            except FrameError:
                continue
            counter = (last & ~0xFFF) | head.counter_low
            if counter < last - 0x800:
                counter += 0x1000
            if not verify(head, self.keys, counter):
                continue
            last = max(last, counter)
            self.frames += 1
            if head.frag_index != head.frag_count - 1:
                continue
            self.counters.append(counter)
            if len(self.counters) <= self.drop_first:
                continue
            if self.forge:
                self.transport.send(encode_reply(DeviceKeys(DEVICE_ID, bytes(16)), counter, 9, 1.0, 0.0), addr)
            if self.error is not None:
                out = encode_error(self.keys, counter, self.error, 0)
            else:
                label = head.truth if head.truth is not None else 0
                out = encode_reply(self.keys, counter, label, 0.9, 0.0, head.copies)
            try:
                for _ in range(2 if self.twice else 1):
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
