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
from codec.wire.replay import MAX_GAP
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
    arrival order), so the firmware must resend. v2: under `key` (default the insecure all-zero
    key); it runs the edge's half of the resync exchange (4.7) and, with `gap`, answers a counter
    beyond its highest + MAX_GAP with ERROR RESYNC (4.3) as an edge with a gap rule does."""

    def __init__(self, drop=(), key=bytes(16), gap=False, highest=None):
        super().__init__(daemon=True)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.url = f"udp://127.0.0.1:{self.sock.getsockname()[1]}"
        self.frames, self.drop, self.stop = [], set(drop), False
        self.key, self.gap, self.highest = key, gap, highest
        self.nonce, self.exchanges, self.refused = None, [], []

        class Peer:
            fingerprint, payload_bytes = bytes.fromhex(SHIPPED_FP), 37
        Peer.key = key
        self.peer = Peer

    def run(self):
        from codec.wire import control as K
        from codec.wire import frame as F
        from codec.wire.packing import unpack_symbols
        from codec.wire.replay import MAX_GAP, ReplayWindow
        while not self.stop:
            try:
                data, addr = self.sock.recvfrom(2048)
            except socket.timeout:
                continue
            if K.is_control_length(len(data)) and F.VERSION != 1:   # the resync exchange (4.7)
                self.sock.sendto(self.control(K, data), addr)
                continue
            if F.VERSION == 1:
                f = F.parse_frame(data)
                key = f.seq
                reply = F.encode_reply(f.fingerprint, f.device_id, f.seq, f.truth, 0.9, 0.0)
            else:
                h = self.highest if self.highest is not None else -1
                window = ReplayWindow(h)
                f = F.parse_data(data, lambda dev: [self.peer()], lambda dev, low, w=window: w.full_counter(low))
                ctx = dict(key=self.key, device_id=f.device_id, fingerprint=self.peer.fingerprint, counter=f.counter)
                if self.gap and f.counter > h + MAX_GAP:
                    self.refused.append(f.counter)
                    self.sock.sendto(F.encode_error(code=F.ErrorCode.RESYNC, **ctx), addr)
                    continue
                key = f.counter
                self.highest = max(h, f.counter)
                reply = F.encode_reply(label=f.truth, confidence=0.9, ber=0.0, **ctx)
            self.frames.append((key, unpack_symbols(np.frombuffer(f.data, np.uint8), 8, 98)))
            if len(self.frames) - 1 not in self.drop:
                self.sock.sendto(reply, addr)

    def control(self, K, data):
        """The edge's half of the resync exchange: offer H + MAX_GAP + 1 (H = the highest counter
        seen, -1 for a new device), ACK the confirmed start and count it as used."""
        f = K.parse_control_up(data, lambda dev: [self.peer()], lambda dev: [self.nonce] if self.nonce else [])
        args = dict(key=self.key, device_id=f.device_id, fingerprint=self.peer.fingerprint, nonce=f.nonce,
                    copies=f.copies)
        self.exchanges.append(f.kind.name)
        if f.kind == K.ControlKind.RESYNC:
            self.nonce = f.nonce
            status, start = K.offer_for(self.highest)
            return K.encode_offer(start=start, status=status, **args)
        self.highest = max(self.highest if self.highest is not None else -1, f.start - 1)
        return K.encode_ack(start=f.start, **args)


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
    # the insecure key: counters from the clock (4.5), one per transmission, the exact next kept
    used = [c for c, _ in edge.frames]
    assert used == list(range(used[0], used[0] + 7))
    assert json.loads((firmware / "counter.state").read_text())["next"] == used[-1] + 1


@pytest.fixture(scope="module")
def keyed(tmp_path_factory):
    """The F411 image built with a real per-device key (device 5), and that key."""
    need("arm-none-eabi-gcc")
    from codec.wire.keys import new_keys, write_keys
    from firmware_sim.build import build_firmware
    d = tmp_path_factory.mktemp("keyed")
    entry = new_keys([5], bytes.fromhex(SHIPPED_FP))[0]
    write_keys(d / "keys.json", [entry])
    build_firmware(SHIPPED, "stm32f411", d / "fw", key_file=d / "keys.json", device_id=5)
    return d / "fw", entry.key, d / "keys.json.dev5.state"


def _run(firmware, edge, count, **kw):
    from firmware_sim.fw_cli import load_images
    from firmware_sim.qemu import run_qemu
    images, labels = load_images("fmnist:test", count)
    return run_qemu("stm32f411", firmware, edge.url, images, labels, labels, timeout_s=0.5, retries=1, **kw)


def test_firmware_without_state_resynchronises_and_then_counts_on(keyed):
    """docs/PROTOCOL.md 4.3/4.7 on the ARM image: no state -> RESYNC/OFFER/CONFIRM/ACK, DATA from the
    committed start, the record written ahead through the harness and exactly at the clean stop; a
    second run reads it back, needs no exchange, and never reuses a counter."""
    firmware, key, state = keyed
    state.unlink(missing_ok=True)
    edge = FakeEdge(key=key)
    edge.start()
    try:
        res = _run(firmware, edge, 3)
        assert edge.exchanges == ["RESYNC", "CONFIRM"] and res["answered"] == 3
        assert [c for c, _ in edge.frames] == [16384, 16385, 16386]   # S = -1 + MAX_GAP + 1 for a new device
        rec = json.loads(state.read_text())
        assert rec["format"] == "snn-device-state" and rec["next"] == 16387   # the exact next at the clean stop
        assert rec["limit"] == 16386 + 16384                           # the last REPLY vouched for 16386
        res = _run(firmware, edge, 3)
        assert edge.exchanges == ["RESYNC", "CONFIRM"] and res["answered"] == 3   # no second exchange
        assert [c for c, _ in edge.frames[3:]] == [16387, 16388, 16389]
    finally:
        edge.stop = True


def test_firmware_told_resync_confirms_its_own_next_counter(keyed):
    """An edge whose history is behind the device (H + MAX_GAP below the device's next) answers
    ERROR RESYNC (4.3); the firmware resynchronises, confirms max(S, its next) and goes on from it."""
    from firmware_sim.harness_state import HarnessState

    firmware, key, state = keyed
    state.unlink(missing_ok=True)
    h = HarnessState(state, key)
    h.save(50_000, 50_000 + 16_383)
    h.close()
    edge = FakeEdge(key=key, gap=True)
    edge.start()
    try:
        res = _run(firmware, edge, 2)
    finally:
        edge.stop = True
    assert edge.refused == [50_000] and edge.exchanges == ["RESYNC", "CONFIRM"]
    assert [c for c, _ in edge.frames] == [50_001, 50_002] and res["answered"] == 2
    assert res["rows"][0]["attempts"] == 2


def test_firmware_stops_when_the_edge_says_exhausted(keyed):
    """An OFFER with status EXHAUSTED (fewer than MAX_GAP counters left, 4.7): the firmware sends no
    DATA, reports that the key must be replaced, and the run stops saying so."""
    firmware, key, state = keyed
    state.unlink(missing_ok=True)
    edge = FakeEdge(key=key, highest=0xFFFFFFFF - 100)
    edge.start()
    try:
        res = _run(firmware, edge, 3)
    finally:
        edge.stop = True
    assert edge.exchanges == ["RESYNC"] and edge.frames == []
    assert res["count"] == 1 and res["rows"][0]["status"] == "rekey" and "snn keys rotate" in res["stopped"]
    assert not state.exists()


def _keyed(stack, firmware, tmp_path):
    """The firmware to run against this stack's edge: with protocol v2 the edge holds per-device
    keys (stack.key_file), so the image is rebuilt with device 1's key; v1 needs none. The device
    starts without a counter state, so its first exchange is a real resync with the edge's desk (4.7)."""
    key_file = getattr(stack, "key_file", None)
    if key_file is None:
        return firmware
    from codec.wire.keys import state_path
    from firmware_sim.build import build_firmware
    out = tmp_path / "keyed"
    build_firmware(SHIPPED, "stm32f411", out, key_file=key_file, device_id=1)
    assert not state_path(key_file, 1).exists()
    return out


def _device_next(stack) -> int | None:
    """The next counter of the state the run left (read before the stack's folder goes). It exists
    only after the edge's ACK, and a new device is offered H + MAX_GAP + 1 = 16,384: so a next of at
    least 16,384 means the real exchange ran."""
    from codec.wire.keys import read_device_state, state_path
    state = read_device_state(state_path(stack.key_file, 1))
    return None if state is None else state.next


def test_qemu_cli_over_proxy_at_ber_1e2_to_edge(firmware, tmp_path):
    from bench.stack import LocalStack
    out = tmp_path / "q.json"
    with LocalStack(ber=1e-2, seed=5) as stack:
        firmware = _keyed(stack, firmware, tmp_path)
        r = subprocess.run([sys.executable, "-m", "snn", "mcu", "qemu", "--board", "stm32f411", "--firmware",
                            str(firmware), "--to", stack.device_url, "--data", "fmnist:test", "--count", "20",
                            "--truth", "--json", str(out)], capture_output=True, text=True, timeout=300)
        nxt = _device_next(stack)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(out.read_text())
    assert res["count"] == 20 and res["answered"] >= 19 and res["accuracy"] >= 0.8
    assert stack.proxy_summary["uplink"]["frames"] >= 20
    assert nxt is not None and nxt >= MAX_GAP + 20, nxt     # resynchronised, then counted on from the start


@pytest.mark.slow
def test_qemu_200_images_over_proxy_at_ber_1e2(firmware, tmp_path):
    from bench.stack import LocalStack
    from firmware_sim.fw_cli import load_images
    from firmware_sim.qemu import run_qemu
    images, labels = load_images("fmnist:test", 200)
    with LocalStack(ber=1e-2, seed=7) as stack:
        res = run_qemu("stm32f411", _keyed(stack, firmware, tmp_path), stack.device_url, images, labels, labels)
        nxt = _device_next(stack)
    print(json.dumps({k: v for k, v in res.items() if k != "rows"}))
    assert res["answered"] >= 198 and res["accuracy"] >= 0.88
    assert nxt is not None and nxt >= MAX_GAP + 200, nxt
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
