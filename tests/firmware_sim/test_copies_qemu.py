"""The copies rule on the ARM image (docs/PROTOCOL.md 3.3): the Python device and the firmware under
QEMU, each against the same scripted edge (the same sequence of dropped transmissions and reported
BERs), frame every transmission with the same header copies and fragment count. Real gcc, QEMU,
Fashion-MNIST images and UDP sockets."""
import random
import socket
import threading

import pytest

from toolchain import need

from codec.datasets import FMNIST_DIR

SHIPPED = "codec/zoo/fmnist_default.int8.onnx"
pytestmark = pytest.mark.skipif(not (FMNIST_DIR / "t10k-images-idx3-ubyte.gz").exists(),
                                reason="real Fashion-MNIST not installed (apt-get install -y dataset-fashion-mnist)")


def _script(n: int, seed: int, drop: float) -> list[float | None]:
    """Per transmission: None (no answer) or the BER the REPLY reports; never 3 drops in a row, so
    every inference is answered within its 3 transmissions."""
    rng = random.Random(seed)
    out: list[float | None] = []
    for _ in range(n):
        if out[-2:] != [None, None] and rng.random() < drop:
            out.append(None)
        else:
            out.append(rng.choice([1e-4, 2e-3, 1e-2, 3e-2, 6e-2, 0.1, 0.15]))
    return out


class ScriptedEdge(threading.Thread):
    """Answers the k-th transmission (all fragments of one counter) as script[k] says, once its
    last fragment arrives, and records each transmission's (copies, fragments)."""

    def __init__(self, script, fingerprint: bytes):
        super().__init__(daemon=True)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.url = f"udp://127.0.0.1:{self.sock.getsockname()[1]}"
        self.script, self.fp, self.plans, self.stop, self.top = script, fingerprint, [], False, 0

    def run(self):
        from codec.wire import frame as F
        from snn.errors import FrameError

        class Peer:
            key, fingerprint, payload_bytes = bytes(16), self.fp, 37
        while not self.stop:
            try:
                data, addr = self.sock.recvfrom(2048)
            except socket.timeout:
                continue
            try:
                f = F.parse_data(data, lambda dev: [Peer()], lambda dev, low: self.top & ~0xFFFF | low)
            except FrameError:
                continue
            self.top = max(self.top, f.counter)
            if f.frag_index != f.frag_count - 1:
                continue
            k = len(self.plans)
            self.plans.append((f.copies, f.frag_count))
            ber = self.script[k] if k < len(self.script) else 1e-3
            if ber is not None:
                self.sock.sendto(F.encode_reply(key=bytes(16), device_id=f.device_id, fingerprint=self.fp,
                                                counter=f.counter, label=0, confidence=0.9, ber=ber,
                                                copies=f.copies), addr)


@pytest.mark.parametrize("mtu, drop, seed", [(51, 0.4, 11), (222, 0.2, 5)])
def test_python_device_and_firmware_choose_the_same_copies(tmp_path, mtu, drop, seed):
    need("arm-none-eabi-gcc")
    need("qemu-system-arm")
    from channel.transports import open_transport
    from codec.wire.keys import DeviceKey
    from device.client import DeviceClient
    from device.encoder import OnnxEncoder
    from device.sources import array_samples
    from firmware_sim.build import build_firmware
    from firmware_sim.fw_cli import load_images
    from firmware_sim.qemu import run_qemu

    images, labels = load_images("fmnist:test", 16)
    enc = OnnxEncoder(SHIPPED)
    script = _script(60, seed, drop)
    runs = {}
    py_edge = ScriptedEdge(script, enc.info.fingerprint)
    py_edge.start()
    transport = open_transport(py_edge.url)
    try:
        client = DeviceClient(enc, transport, key=DeviceKey(5, bytes(16), None), mtu=mtu, timeout=0.4, retries=2,
                              window=1, header_copies="auto")
        client.run(array_samples(images.reshape(len(images), 28, 28, 1), labels))
    finally:
        transport.close()
        py_edge.stop = True
    runs["python"] = py_edge.plans
    build_firmware(SHIPPED, "stm32f411", tmp_path / "fw", device_id=5, mtu=mtu)
    c_edge = ScriptedEdge(script, enc.info.fingerprint)
    c_edge.start()
    try:
        res = run_qemu("stm32f411", tmp_path / "fw", c_edge.url, images, None, labels, timeout_s=0.5, retries=2)
    finally:
        c_edge.stop = True
    runs["c"] = c_edge.plans
    assert res["answered"] == 16 and client.summary()["answered"] == 16
    print(f"MTU {mtu}: {len(runs['c'])} transmissions, (copies, fragments) used: {sorted(set(runs['c']))}, "
          f"equal: {runs['c'] == runs['python']}")
    assert runs["c"] == runs["python"]
    assert len(set(runs["c"])) >= 3      # the script moved the choice around
