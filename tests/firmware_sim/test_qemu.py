"""`snn mcu qemu`: the cross-compiled firmware under qemu-system-arm (netduinoplus2), images and
replies over its emulated UART. Real gcc, real QEMU, real Fashion-MNIST images, real sockets."""
import json
import socket
import subprocess
import sys
import threading

import numpy as np
import pytest

from toolchain import need

from codec.datasets import FMNIST_DIR
from export.shipped import onnx_fingerprint

SHIPPED = "codec/zoo/fmnist_default.int8.onnx"
SHIPPED_FP = onnx_fingerprint(SHIPPED)     # the codec the committed encoder belongs to
pytestmark = pytest.mark.skipif(not (FMNIST_DIR / "t10k-images-idx3-ubyte.gz").exists(),
                                reason="real Fashion-MNIST not installed (apt-get install -y dataset-fashion-mnist)")


@pytest.fixture(scope="module")
def firmware(tmp_path_factory):
    need("arm-none-eabi-gcc")
    need("qemu-system-arm")
    from firmware_sim.build import build_firmware
    out = tmp_path_factory.mktemp("qemu") / "fw"
    build_firmware(SHIPPED, "stm32f411", out, device_id=5)
    return out


class FakeEdge(threading.Thread):
    """A UDP peer speaking the reference protocol (codec.wire): it parses each DATA frame, keeps
    its symbols by transmission (v1 sequence number, v2 frame counter) and answers with the
    frame's truth label, except that it ignores the transmissions numbered in `drop` (0-based, in
    arrival order), so the firmware must resend. v2: the insecure all-zero key."""

    def __init__(self, drop=()):
        super().__init__(daemon=True)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.url = f"udp://127.0.0.1:{self.sock.getsockname()[1]}"
        self.frames, self.drop, self.stop = [], set(drop), False

    def run(self):
        from codec.wire import frame as F
        from codec.wire.packing import unpack_symbols
        while not self.stop:
            try:
                data, addr = self.sock.recvfrom(2048)
            except socket.timeout:
                continue
            if F.VERSION == 1:
                f = F.parse_frame(data)
                key = f.seq
                reply = F.encode_reply(f.fingerprint, f.device_id, f.seq, f.truth, 0.9, 0.0)
            else:
                class Peer:
                    key, fingerprint, payload_bytes = bytes(16), bytes.fromhex(SHIPPED_FP), 37
                f = F.parse_data(data, lambda dev: [Peer()], lambda dev, low: low)
                key = f.counter
                reply = F.encode_reply(key=bytes(16), device_id=f.device_id, fingerprint=Peer.fingerprint,
                                       counter=f.counter, label=f.truth, confidence=0.9, ber=0.0)
            self.frames.append((key, unpack_symbols(np.frombuffer(f.data, np.uint8), 8, 98)))
            if len(self.frames) - 1 not in self.drop:
                self.sock.sendto(reply, addr)


def test_firmware_symbols_equal_simulator_and_firmware_resends(firmware):
    from firmware_sim.fw_cli import load_images
    from firmware_sim.lowering import lower
    from firmware_sim.qemu import run_qemu

    images, labels = load_images("fmnist:test", 6)
    edge = FakeEdge(drop={2})   # the first transmission of image 2 goes unanswered
    edge.start()
    try:
        res = run_qemu("stm32f411", firmware, edge.url, images, labels, labels, timeout_s=0.5, retries=2)
    finally:
        edge.stop = True
    sim = lower(SHIPPED).run(images)
    assert len(edge.frames) == 7
    got = [sym for k, (_, sym) in enumerate(edge.frames) if k != 2]
    for k in range(6):
        assert np.array_equal(got[k], sim[k]), k                  # the ARM image computes the simulator's symbols
    assert np.array_equal(edge.frames[2][1], edge.frames[3][1])  # the resend carries the same inference
    assert res["answered"] == 6 and res["accuracy"] == 1.0       # the firmware parsed every reply
    assert res["rows"][2]["attempts"] == 2 and res["resends"] == 1


def _keyed(stack, firmware, tmp_path):
    """The firmware to run against this stack's edge: with protocol v2 the edge holds per-device
    keys (stack.key_file), so the image is rebuilt with device 1's key; v1 needs none."""
    key_file = getattr(stack, "key_file", None)
    if key_file is None:
        return firmware
    from firmware_sim.build import build_firmware
    out = tmp_path / "keyed"
    build_firmware(SHIPPED, "stm32f411", out, key_file=key_file, device_id=1)
    return out


def test_qemu_cli_over_proxy_at_ber_1e2_to_edge(firmware, tmp_path):
    from bench.stack import LocalStack
    out = tmp_path / "q.json"
    with LocalStack(ber=1e-2, seed=5) as stack:
        firmware = _keyed(stack, firmware, tmp_path)
        r = subprocess.run([sys.executable, "-m", "snn", "mcu", "qemu", "--board", "stm32f411", "--firmware",
                            str(firmware), "--to", stack.device_url, "--data", "fmnist:test", "--count", "20",
                            "--truth", "--json", str(out)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(out.read_text())
    assert res["count"] == 20 and res["answered"] >= 19 and res["accuracy"] >= 0.8
    assert stack.proxy_summary["uplink"]["frames"] >= 20


@pytest.mark.slow
def test_qemu_200_images_over_proxy_at_ber_1e2(firmware, tmp_path):
    from bench.stack import LocalStack
    from firmware_sim.fw_cli import load_images
    from firmware_sim.qemu import run_qemu
    images, labels = load_images("fmnist:test", 200)
    with LocalStack(ber=1e-2, seed=7) as stack:
        res = run_qemu("stm32f411", _keyed(stack, firmware, tmp_path), stack.device_url, images, labels, labels)
    print(json.dumps({k: v for k, v in res.items() if k != "rows"}))
    assert res["answered"] >= 198 and res["accuracy"] >= 0.88
    assert 0.005 < stack.proxy_summary["uplink"]["measured_ber"] < 0.02


def test_icount_reports_instructions_per_layer(firmware):
    from firmware_sim.fw_cli import load_images
    from firmware_sim.qemu import run_qemu
    images, labels = load_images("fmnist:test", 2)
    edge = FakeEdge()
    edge.start()
    try:
        res = run_qemu("stm32f411", firmware, edge.url, images, labels, labels, icount=True)
    finally:
        edge.stop = True
    meta = json.loads((firmware / "firmware.json").read_text())
    assert len(res["layers"]) == len(meta["layers"])
    assert all(layer["instructions"] > 0 for layer in res["layers"])
    convs = sum(layer["macs"] for layer in res["layers"])
    assert convs > 1e7 and res["instructions"] > convs   # at least an instruction per MAC
    assert "instructions, not cycles" in res["note"]


def test_qemu_bad_input_is_one_line(tmp_path, firmware):
    for args in (["--board", "stm32f411", "--firmware", str(tmp_path)],
                 ["--board", "stm32f746", "--firmware", str(firmware)],   # built for another board
                 ["--board", "stm32f411", "--firmware", str(firmware), "--count", "0"]):
        r = subprocess.run([sys.executable, "-m", "snn", "mcu", "qemu", *args, "--to", "udp://127.0.0.1:9"],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr


@pytest.mark.parametrize("board, machine", [("stm32f746", "mps2-an500"), ("nrf52840", "mps2-an386")])
def test_boards_without_a_modelled_uart_run_on_the_mps2_image_of_their_core(tmp_path, board, machine):
    need("arm-none-eabi-gcc")
    need("qemu-system-arm")
    from firmware_sim.build import build_firmware
    from firmware_sim.fw_cli import load_images
    from firmware_sim.lowering import lower
    from firmware_sim.qemu import run_qemu
    res = build_firmware(SHIPPED, board, tmp_path / board)
    assert res["qemu_machine"] == machine
    images, labels = load_images("fmnist:test", 2)
    edge = FakeEdge()
    edge.start()
    try:
        out = run_qemu(board, tmp_path / board, edge.url, images, labels, labels)
    finally:
        edge.stop = True
    assert out["answered"] == 2 and out["qemu_machine"] == machine
    sim = lower(SHIPPED).run(images)
    assert all(np.array_equal(sym, sim[k]) for k, (_, sym) in enumerate(edge.frames))
