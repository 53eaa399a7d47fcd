"""`snn mcu qemu`: the cross-compiled firmware under qemu-system-arm, over its emulated UART.

    feeder ──UART (TCP chardev)──► firmware-qemu.elf ──UART──► relay ──► --to URL (proxy → edge)
    feeder ◄── status 'S' ◄──────── firmware ◄──UART◄── relay ◄── reply ◄──────────┘

QEMU runs the image the build wrote for its nearest machine (``firmware-qemu.elf``; for the
STM32F411 that is ``netduinoplus2``, whose STM32F4 USART2 and memory map the board shares) with
that USART bridged to a TCP socket this module listens on. Over that one byte stream this side
sends images (the harness's ``00 'I'`` message, see ``firmware/main.c``), relays every protocol
frame the firmware writes (tagged ``01``) to ``--to`` unchanged, and writes the replies back.
The firmware itself parses the reply, times out, retries, and reports the outcome in a status
message; nothing of the device runs in Python. The emulated USART has a one-byte receive
register: QEMU's character backend stops reading the socket until the firmware has taken the
byte (``can_receive``), so a polling firmware loses nothing and no pacing is needed.

Timing. QEMU emulates instructions, not a pipeline: without ``-icount`` the SysTick follows the
host's clock, so the encode time reported is QEMU's wall time; with ``--icount`` (``-icount
shift=0``: one instruction = 1 ns of virtual time) the SysTick ticks per layer convert to
**instructions executed**, which this module reports next to the cost model's cycle estimate.
Instructions are not cycles: a Cortex-M4 spends 1-3 cycles on most, more on loads from flash
with wait states; QEMU models none of that.
"""
from __future__ import annotations

import json
import selectors
import shutil
import socket
import subprocess
import time
from pathlib import Path

import numpy as np

from codec.wire.cobs import CobsStreamDecoder, cobs_frame
from snn.errors import SnnError

QEMU = "qemu-system-arm"
# the firmware's 'S' status codes (main.c)
STATUS = ("answered", "error", "no_reply", "no_counter", "rekey", "store_error")
# the statuses after which the firmware sends nothing more under its key: the run stops, saying why
STOPS = {4: "the edge refused the key (NO_STATE or EXHAUSTED, docs/PROTOCOL.md 4.7) or its counters are used "
            "up: give the device a new key (snn keys rotate) and rebuild the firmware with it",
         5: "the firmware could not read or write its counter record (the harness's state file): see the "
            "error above"}
RESYNC_WAITS = 21    # replies waited for by one failed resynchronisation at most (resync.h: 3 attempts x
                     # (OFFER + 3 CONFIRMs) + back-offs of at most 1.5 x (2 + 4) timeouts)
QEMU_HINT = "apt-get install qemu-system-arm (scripts/setup.sh does it as root)"


def _open_transport(url: str):
    from channel.transports import open_transport
    return open_transport(url)


def load_firmware(firmware_dir: Path, board: str) -> dict:
    """The build's description (firmware.json) with its QEMU image checked."""
    meta_path = Path(firmware_dir) / "firmware.json"
    if not meta_path.is_file():
        raise SnnError(f"{firmware_dir}: not a firmware folder (no firmware.json); run snn mcu build first")
    meta = json.loads(meta_path.read_text())
    if Path(board).stem.lower() != meta["board"]:
        raise SnnError(f"{firmware_dir} was built for {meta['board']}, not {board}")
    if not meta.get("qemu_machine"):
        raise SnnError(f"no QEMU image for {meta['board']}: QEMU models no machine near it")
    elf = Path(firmware_dir) / "firmware-qemu.elf"
    if not elf.is_file():
        raise SnnError(f"{elf} is missing; rebuild with snn mcu build")
    meta["qemu_elf"] = str(elf)
    return meta


class QemuUart:
    """qemu-system-arm running an image, its firmware UART connected to a local TCP socket."""

    def __init__(self, machine: str, elf: str, serial_index: int, icount: bool = False):
        qemu = shutil.which(QEMU)
        if qemu is None:
            raise SnnError(f"{QEMU} not found: {QEMU_HINT}")
        self.server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(1)
        port = self.server.getsockname()[1]
        serial = ["-serial", "null"] * serial_index + ["-serial", "chardev:uart"]
        cmd = [qemu, "-M", machine, "-display", "none", "-monitor", "none", "-nodefaults", "-kernel", elf,
               "-chardev", f"socket,id=uart,host=127.0.0.1,port={port}", *serial]
        if icount:
            cmd += ["-icount", "shift=0"]
        self.cmd = cmd
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.server.settimeout(15)
        try:
            self.sock, _ = self.server.accept()
        except socket.timeout:
            err = self._stop()
            raise SnnError(f"{QEMU} did not connect its UART: {err or 'no output'}") from None
        self.sock.setblocking(False)
        self.decoder = CobsStreamDecoder(max_frame=4096)

    def send(self, message: bytes) -> None:
        self.sock.setblocking(True)
        self.sock.sendall(cobs_frame(message))
        self.sock.setblocking(False)

    def read(self) -> list[bytes]:
        try:
            data = self.sock.recv(65536)
        except BlockingIOError:
            return []
        if not data:
            raise SnnError(f"{QEMU} closed the UART: {self._stop() or 'it exited'}")
        return self.decoder.feed(data)

    def _stop(self) -> str:
        """Stop QEMU; the last line it wrote on stderr (why it stopped, when it did on its own)."""
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            _, err = self.proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            err = b""
        lines = (err or b"").decode(errors="replace").strip().splitlines()
        return lines[-1] if lines else ""

    def close(self) -> None:
        for s in (getattr(self, "sock", None), self.server):
            if s is not None:
                try:
                    s.close()
                except OSError:
                    pass
        self._stop()


def harness_state(meta: dict, firmware_dir: Path):
    """The counter record this run keeps for the firmware (firmware_sim.harness_state): the key's
    state file beside the keys file, or counter.state in the firmware folder for the insecure key."""
    from codec.wire.keys import device_key, state_path
    from firmware_sim.harness_state import HarnessState

    key_file = meta.get("key_file")
    if key_file:
        dev = int(meta["device_id"])
        return HarnessState(state_path(key_file, dev), device_key(key_file, dev).key, device_id=dev)
    return HarnessState(Path(firmware_dir) / "counter.state", bytes(16), insecure=True)


def serve_harness(qemu: "QemuUart", state, m: bytes) -> bool:
    """Answer a firmware request on the UART: 'W' (make this counter record durable) or 'E'
    (random bytes from the OS's CSPRNG, for a resynchronisation nonce). True if it was one."""
    import os

    if m[:2] == b"\x00W" and len(m) == 10:
        nxt, limit = int.from_bytes(m[2:6], "big"), int.from_bytes(m[6:10], "big")
        state.save(nxt, limit)
        qemu.send(b"\x00w" + m[2:10])
        return True
    if m[:2] == b"\x00E" and len(m) == 3 and 0 < m[2] <= 16:
        qemu.send(b"\x00e" + os.urandom(m[2]))
        return True
    return False


def clean_stop(qemu: "QemuUart", state, wait_s: float = 10.0) -> None:
    """End a run the way a device exits cleanly (docs/PROTOCOL.md 4.3): the firmware writes its
    exact next counter and its limit ('F'; it answers with 'W', then 'f'), so the next run skips
    none of the counters written ahead."""
    qemu.send(b"\x00F")
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        for m in qemu.read():
            if m[:2] == b"\x00f" and len(m) == 3:
                if m[2]:
                    raise SnnError(f"the firmware could not write its counter record at the end (status {m[2]})")
                return
            serve_harness(qemu, state, m)
        time.sleep(0.01)
    raise SnnError(f"the firmware did not write its counter record within {wait_s:.0f} s of the run's end")


def ber_of(code: int) -> float:
    """The edge's BER estimate from a reply's BER code (codec.wire.frame.ber_from_code)."""
    from codec.wire.frame import ber_from_code
    return ber_from_code(code)


def _layer_estimates(meta: dict, core: str) -> list[int]:
    """The cost model's cycles for each firmware layer (the steps each stored tensor's loop runs)."""
    from firmware_sim.cost_model import step_cycles
    from firmware_sim.lowering import lower

    program = lower(meta["encoder"])
    by_name = {s.name: s for s in program.steps}
    return [int(sum(step_cycles(by_name[n], core) for n in layer["steps"] if n in by_name)) for layer in meta["layers"]]


def _wait_ready(qemu: "QemuUart", sel) -> None:
    """Wait (at most 20 s) for the firmware's ready message on its UART."""
    deadline = time.monotonic() + 20
    while True:
        if time.monotonic() > deadline:
            raise SnnError("the firmware did not report ready on its UART within 20 s")
        sel.select(0.2)
        if any(m[:2] == b"\x00R" for m in qemu.read()):
            return


def _status_row(seq: int, status: bytes, wall: float) -> dict:
    """One image's row from the firmware's 'S' message."""
    code = status[4]
    return {"seq": seq, "status": STATUS[code] if code < len(STATUS) else f"status {code}",
            "label": int(status[5]) if code == 0 else None,
            "confidence": status[6] / 255.0 if code == 0 else None,
            "ber": ber_of(status[8]) if code == 0 else None,
            "error_code": int(status[5]) if code == 1 else None, "attempts": int(status[9]),
            "encode_ticks": int.from_bytes(status[10:14], "big"),
            "rtt_ticks": int.from_bytes(status[14:18], "big"), "wall_ms": wall * 1e3}


def run_qemu(board: str, firmware_dir: Path, to_url: str, images: np.ndarray, send_labels=None,
             truth_labels=None, timeout_s: float = 3.0, retries: int = 2, icount: bool = False,
             progress=None, seq0: int = 0) -> dict:
    """Feed `images` to the firmware under QEMU, relay its frames to `to_url`; the run's figures."""
    meta = load_firmware(Path(firmware_dir), board)
    images = np.ascontiguousarray(images, dtype=np.uint8)
    if len(images) and images[0].size != meta["input_bytes"]:
        raise SnnError(f"images of {images[0].size} bytes; the firmware takes {meta['input_bytes']}")
    if not 0 < timeout_s <= 60 or not 0 <= retries <= 10:
        raise SnnError("--timeout must lie in (0, 60] s and --retries in 0..10")
    link = _open_transport(to_url)
    qemu = state = stopped = None
    t_start = time.monotonic()
    try:
        qemu = QemuUart(meta["qemu_machine"], meta["qemu_elf"], int(meta.get("qemu_serial_index", 0)), icount)
        sel = selectors.DefaultSelector()
        sel.register(qemu.sock, selectors.EVENT_READ, "uart")
        sel.register(link.fileno(), selectors.EVENT_READ, "link")
        _wait_ready(qemu, sel)
        boot_s = time.monotonic() - t_start
        protocol = int(meta.get("protocol", 2))
        if progress:
            progress(f"QEMU {meta['qemu_machine']} booted {Path(meta['qemu_elf']).name} in {boot_s:.2f} s: "
                     f"protocol v{protocol}, key {meta.get('key', '?')}; {len(images)} images to {to_url}")
        # the counter record the firmware's flash cannot keep here (it writes ahead with 'W')
        state = harness_state(meta, Path(firmware_dir))
        qemu.send(state.message())
        hz = float(meta["qemu_hz"])
        rows, layer_ticks, frames_out, replies_in = [], [], 0, 0
        for k, img in enumerate(images):
            seq = (seq0 + k) & 0xFFFF
            truth = 0xFF if send_labels is None else int(send_labels[k])
            tmo = int(round(timeout_s * 1000))
            qemu.send(bytes([0, ord("I"), seq >> 8, seq & 0xFF, truth, tmo >> 8, tmo & 0xFF, retries]) + img.tobytes())
            t0 = time.monotonic()
            status = layers = None
            limit = t0 + 30 + (timeout_s * (retries + 1 + RESYNC_WAITS)) * (20 if icount else 3)
            while status is None or layers is None:
                if time.monotonic() > limit:
                    raise SnnError(f"image {k}: the firmware sent no status within {limit - t0:.0f} s")
                for key, _ in sel.select(0.5):
                    if key.data == "uart":
                        for m in qemu.read():
                            if m[:2] == b"\x00S" and len(m) >= 23 and (m[2] << 8 | m[3]) == seq:
                                status = m
                            elif m[:2] == b"\x00L":
                                layers = m
                            elif serve_harness(qemu, state, m):
                                pass
                            elif m[:1] == b"\x01":   # the protocol stream: relayed unchanged
                                link.send(m[1:])
                                frames_out += 1
                    else:
                        got = link.recv(timeout=0)
                        while got is not None:
                            qemu.send(b"\x01" + got[0])
                            replies_in += 1
                            got = link.recv(timeout=0)
            wall = time.monotonic() - t0
            code = status[4]
            state.used_below(int.from_bytes(status[19:23], "big"))
            rows.append(_status_row(seq, status, wall))
            n_layers = layers[2]
            layer_ticks.append([int.from_bytes(layers[3 + 4 * j:7 + 4 * j], "big") for j in range(n_layers)])
            if progress and ((k + 1) % 50 == 0 or k + 1 == len(images)):
                done = sum(r["status"] == "answered" for r in rows)
                progress(f"{k + 1}/{len(images)} images, {done} answered")
            if code in STOPS:
                stopped = STOPS[code]
                break
        clean_stop(qemu, state)
    finally:
        if qemu is not None:
            qemu.close()
        if state is not None:
            state.close()
        link.close()
    wall_s = time.monotonic() - t_start
    answered = [r for r in rows if r["status"] == "answered"]
    correct = 0
    if truth_labels is not None:
        correct = sum(1 for r, t in zip(rows, truth_labels) if r["label"] is not None and r["label"] == int(t))
    enc = np.array([r["encode_ticks"] for r in rows], float) / hz * 1e3
    rtt = np.array([r["rtt_ticks"] for r in answered], float) / hz * 1e3 if answered else np.zeros(1)
    res = {"board": meta["board"], "qemu_machine": meta["qemu_machine"], "protocol": protocol, "count": len(rows),
           "answered": len(answered), "accuracy": correct / len(rows) if rows else 0.0,
           "accuracy_answered": correct / len(answered) if answered else 0.0,
           "errors": sum(r["status"] == "error" for r in rows), "no_reply": sum(r["status"] == "no_reply" for r in rows),
           "no_counter": sum(r["status"] in STATUS[3:] for r in rows), "stopped": stopped,
           "resends": int(sum(r["attempts"] - 1 for r in rows)), "frames_relayed": frames_out,
           "replies_relayed": replies_in, "icount": bool(icount), "boot_s": boot_s, "wall_s": wall_s,
           "per_image_wall_ms": float(np.mean([r["wall_ms"] for r in rows])) if rows else 0.0,
           "rtt_p50_ms": float(np.percentile(rtt, 50)), "rtt_p99_ms": float(np.percentile(rtt, 99)),
           "encode_p50_ms": float(np.percentile(enc, 50)) if rows else 0.0,
           "timing_note": ("virtual time under -icount shift=0 (1 instruction = 1 ns)" if icount
                           else "QEMU wall time of the emulated firmware, not the board's")}
    if icount and layer_ticks:
        per = np.mean(np.array(layer_ticks, float), axis=0) * (1e9 / hz)   # ticks -> ns -> instructions
        from firmware_sim.boards import load_board
        core = load_board(meta["board"]).core
        est = _layer_estimates(meta, core)
        res["instructions"] = int(round(per.sum()))
        res["cost_model_cycles"] = int(sum(est))
        res["layers"] = [{"layer": L["index"], "tensor": L["tensor"], "ops": L["ops"], "macs": L["macs"],
                          "instructions": int(round(i)), "cost_model_cycles": e}
                         for L, i, e in zip(meta["layers"], per, est)]
        res["note"] = "QEMU counts instructions, not cycles; the cost model estimates cycles"
    res["rows"] = rows
    return res
