"""`snn mcu qemu`: the cross-compiled firmware under qemu-system-arm (netduinoplus2), images and
replies over its emulated UART. Real gcc, real QEMU, real Fashion-MNIST images, real sockets."""
import json
import os
import socket
import subprocess
import sys
import threading

import numpy as np
import pytest

from toolchain import need

from codec.datasets import FMNIST_DIR

SHIPPED = "codec/zoo/fmnist_default.int8.onnx"
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
    """A UDP peer that parses each DATA frame with codec.wire, keeps its symbols, and answers with
    the frame's truth label, except that it ignores the first attempt of the sequence numbers in
    `drop_first` (so the firmware must resend)."""

    def __init__(self, drop_first=()):
        super().__init__(daemon=True)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.url = f"udp://127.0.0.1:{self.sock.getsockname()[1]}"
        self.symbols, self.seen, self.drop_first, self.stop = {}, {}, set(drop_first), False

    def run(self):
        from codec.wire.frame import encode_reply, parse_frame
        from codec.wire.packing import unpack_symbols
        while not self.stop:
            try:
                data, addr = self.sock.recvfrom(2048)
            except socket.timeout:
                continue
            f = parse_frame(data)
            self.seen[f.seq] = self.seen.get(f.seq, 0) + 1
            self.symbols[f.seq] = unpack_symbols(np.frombuffer(f.data, np.uint8), 8, 98)
            if f.seq in self.drop_first and self.seen[f.seq] == 1:
                continue
            self.sock.sendto(encode_reply(f.fingerprint, f.device_id, f.seq, f.truth, 0.9, 0.0), addr)


@pytest.mark.xfail(reason="the C firmware still speaks wire v1; wire v2 (docs/PROTOCOL.md, issue 13) is being implemented in C on branch fw: drop this mark when it lands", run=False)
def test_firmware_symbols_equal_simulator_and_firmware_resends(firmware):
    from firmware_sim.fw_cli import load_images
    from firmware_sim.lowering import lower
    from firmware_sim.qemu import run_qemu

    images, labels = load_images("fmnist:test", 6)
    edge = FakeEdge(drop_first={2})
    edge.start()
    try:
        res = run_qemu("stm32f411", firmware, edge.url, images, labels, labels, timeout_s=0.5, retries=2)
    finally:
        edge.stop = True
    sim = lower(SHIPPED).run(images)
    assert sorted(edge.symbols) == list(range(6))
    for k in range(6):
        assert np.array_equal(edge.symbols[k], sim[k]), k      # the ARM image computes the simulator's symbols
    assert res["answered"] == 6 and res["accuracy"] == 1.0       # the firmware parsed every reply
    assert res["rows"][2]["attempts"] == 2 and edge.seen[2] == 2 and res["resends"] == 1


@pytest.mark.xfail(reason="the C firmware still speaks wire v1; wire v2 (docs/PROTOCOL.md, issue 13) is being implemented in C on branch fw: drop this mark when it lands", run=False)
def test_qemu_cli_over_proxy_at_ber_1e2_to_edge(firmware, tmp_path):
    from bench.stack import LocalStack
    out = tmp_path / "q.json"
    with LocalStack(ber=1e-2, seed=5) as stack:
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
        res = run_qemu("stm32f411", firmware, stack.device_url, images, labels, labels)
    print(json.dumps({k: v for k, v in res.items() if k != "rows"}))
    assert res["answered"] >= 198 and res["accuracy"] >= 0.88
    assert 0.005 < stack.proxy_summary["uplink"]["measured_ber"] < 0.02


@pytest.mark.xfail(reason="the C firmware still speaks wire v1; wire v2 (docs/PROTOCOL.md, issue 13) is being implemented in C on branch fw: drop this mark when it lands", run=False)
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
                 ["--board", "stm32f746", "--firmware", str(firmware)],
                 ["--board", "stm32f411", "--firmware", str(firmware), "--count", "0"]):
        r = subprocess.run([sys.executable, "-m", "snn", "mcu", "qemu", *args, "--to", "udp://127.0.0.1:9"],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr
