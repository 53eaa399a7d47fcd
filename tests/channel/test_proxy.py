"""channel/proxy.py: frames crossing the emulator over real UDP sockets and real pty pairs.

The proxy runs as a real `snn channel proxy` subprocess (stopped by SIGINT / SIGTERM, which must
leave nothing behind) and in-process for the serial-to-serial bridge between two pty cables.
"""
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from channel.bit_errors import make_error_model
from channel.loss import make_loss_model
from channel.proxy import ChannelProxy
from channel.pty import PtyCable
from channel.transports import open_transport

ROOT = Path(__file__).resolve().parents[2]
Z999 = 3.2905


def ones(data: bytes) -> int:
    return int(np.unpackbits(np.frombuffer(data, np.uint8)).sum())


def children_of(pid: int) -> list[int]:
    kids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                kids.append(int(entry))
    return kids


def start_proxy(*args):
    proc = subprocess.Popen([sys.executable, "-m", "snn", "channel", "proxy", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    line = proc.stdout.readline()
    if not line.startswith("proxy ready:"):
        proc.kill()
        raise AssertionError(f"proxy did not start: {line!r} {proc.stderr.read()}")
    fields = dict(kv.split("=", 1) for kv in line.split()[2:])
    return proc, fields["listen"], fields["to"]


def stop_proxy(proc, sig=signal.SIGINT):
    assert children_of(proc.pid) == []
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    with pytest.raises(ProcessLookupError):
        os.kill(proc.pid, 0)  # reaped: nothing left behind
    return out, err


def ge_half_width(n_bits, ber, burst):
    m = make_error_model("ge", ber, burst)
    lam = 1 - m.p_gb - m.p_bg
    var = n_bits * (ber * (1 - ber) + 2 * m.ber_bad ** 2 * (1 - m.pi_bad) * m.pi_bad * lam / (1 - lam))
    return Z999 * math.sqrt(var)


def test_udp_proxy_subprocess_both_directions(tmp_path):
    summary_path = tmp_path / "summary.json"
    with open_transport("udp://127.0.0.1:0", listen=True) as edge:
        edge_port = edge.local_address[1]
        proc, listen, _ = start_proxy(
            "--listen", "udp://127.0.0.1:0", "--to", f"udp://127.0.0.1:{edge_port}",
            "--ber", "1e-2", "--model", "ge", "--burst", "8", "--downlink-ber", "2e-3",
            "--seed", "7", "--stats-interval", "0.2", "--json", str(summary_path))
        try:
            n, size = 1500, 250
            up = down = 0
            with open_transport(listen) as device:
                for _ in range(n):
                    device.send(bytes(size))
                    data, addr = edge.recv(5.0)
                    assert len(data) == size
                    up += ones(data)
                    edge.send(bytes(size), addr)
                    reply = device.recv(5.0)
                    assert reply is not None and len(reply[0]) == size
                    down += ones(reply[0])
        finally:
            out, err = stop_proxy(proc)
    bits = n * size * 8
    assert abs(up - bits * 1e-2) <= ge_half_width(bits, 1e-2, 8)
    # the downlink uses the same model (GE) at its own BER
    assert abs(down - bits * 2e-3) <= ge_half_width(bits, 2e-3, 8)
    summary = json.loads(summary_path.read_text())
    assert summary["uplink"]["frames"] == n and summary["uplink"]["bits_flipped"] == up
    assert summary["downlink"]["delivered"] == n and summary["downlink"]["bits_flipped"] == down
    assert "measured BER" in out and "bits flipped" in err  # summary + live counters


def test_udp_proxy_lora_phy_flips_real_bits_both_ways_at_the_model_rate(tmp_path):
    """--lora-phy: each datagram is one LoRa packet through the bit-true PHY, up and down."""
    summary_path = tmp_path / "summary.json"
    with open_transport("udp://127.0.0.1:0", listen=True) as edge:
        proc, listen, _ = start_proxy(
            "--listen", "udp://127.0.0.1:0", "--to", f"udp://127.0.0.1:{edge.local_address[1]}",
            "--lora-phy", "--sf", "7", "--cr", "4/5", "--snr-db", "-9", "--downlink-snr-db", "-10",
            "--seed", "3", "--stats-interval", "0", "--json", str(summary_path))
        try:
            n, size, reply = 600, 49, 13
            up = down = 0
            rng = np.random.default_rng(0)
            with open_transport(listen) as device:
                for _ in range(n):
                    sent = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
                    device.send(sent)
                    data, addr = edge.recv(5.0)
                    up += ones(bytes(a ^ b for a, b in zip(data, sent)))
                    edge.send(bytes(reply), addr)
                    back = device.recv(5.0)
                    assert back is not None and len(back[0]) == reply
                    down += ones(back[0])
        finally:
            stop_proxy(proc)
    from channel.lora_phy import LoRaPhy
    want_up = LoRaPhy(sf=7, snr_db=-9).expected_ber(size) * n * size * 8
    want_down = LoRaPhy(sf=7, snr_db=-10).expected_ber(reply) * n * reply * 8
    assert abs(up - want_up) < 0.3 * want_up, (up, want_up)      # symbol errors cluster: a wide margin
    assert abs(down - want_down) < 0.35 * want_down, (down, want_down)
    summary = json.loads(summary_path.read_text())
    assert summary["uplink"]["bits_flipped"] == up and summary["downlink"]["bits_flipped"] == down
    assert summary["uplink_model"].startswith("lora-phy SF7 CR4/5 SNR -9 dB")


def test_pty_proxy_subprocess_with_pyserial_ends():
    proc, dev_tty, edge_tty = start_proxy("--listen", "pty://", "--to", "pty://", "--ber", "1e-2",
                                          "--downlink-ber", "1e-2", "--seed", "3", "--stats-interval", "0")
    try:
        n, size = 600, 200
        up = down = 0
        with open_transport(f"serial://{dev_tty}?baud=115200") as device, \
                open_transport(f"serial://{edge_tty}?baud=115200") as edge:
            for _ in range(n):
                device.send(bytes(size))
                data, _ = edge.recv(5.0)
                assert len(data) == size  # COBS framing survives: only contents are damaged
                up += ones(data)
                edge.send(bytes(size))
                down += ones(device.recv(5.0)[0])
    finally:
        out, _ = stop_proxy(proc, signal.SIGTERM)
    bits = n * size * 8
    for flips in (up, down):
        assert abs(flips - bits * 1e-2) <= Z999 * math.sqrt(bits * 1e-2 * 0.99)
    assert "600" in out


def test_serial_bridge_between_two_pty_cables_with_loss():
    """device tty <-cable-> proxy serial:// ... serial:// <-cable-> edge tty, all real ttys."""
    with PtyCable() as dev_cable, PtyCable() as edge_cable:
        dev_tty, proxy_dev_side = dev_cable.paths
        proxy_edge_side, edge_tty = edge_cable.paths
        proxy = ChannelProxy(f"serial://{proxy_dev_side}", f"serial://{proxy_edge_side}",
                             uplink=make_error_model("iid", 0.0), uplink_loss=make_loss_model(0.2),
                             seed=5)
        thread = threading.Thread(target=proxy.run, kwargs={"stats_interval": 0}, daemon=True)
        thread.start()
        try:
            with open_transport(f"serial://{dev_tty}") as device, \
                    open_transport(f"serial://{edge_tty}") as edge:
                sent = [i.to_bytes(2, "big") * 20 for i in range(500)]
                for frame in sent:
                    device.send(frame)
                got = []
                # read until the proxy has passed on or dropped all 500 (a 0.5 s silence is not
                # the end: under CPU load the proxy can stall longer, and the test then stopped it
                # with frames still in the cable: "430 == 500")
                deadline = time.monotonic() + 30
                while len(got) + proxy.up.stats.as_dict()["dropped"] < len(sent) and time.monotonic() < deadline:
                    if (r := edge.recv(0.5)) is not None:
                        got.append(r[0])
                while (r := edge.recv(0.2)) is not None:   # nothing more may come
                    got.append(r[0])
                edge.send(b"back")
                assert device.recv(2.0)[0] == b"back"
        finally:
            proxy.stop()
            thread.join(5)
            proxy.close()
        assert not thread.is_alive()
        stats = proxy.summary()["uplink"]
        # the whole summary on failure: a rare "482 == 500" under heavy memory and CPU load (2026-12-01,
        # not reproduced since) says whether the proxy saw broken framing or no bytes at all
        assert stats["frames"] == 500 and stats["dropped"] + len(got) == 500, (len(got), proxy.summary())
        assert abs(stats["dropped"] - 100) <= Z999 * math.sqrt(500 * 0.2 * 0.8)
        assert set(got) <= set(sent) and got == sorted(got, key=sent.index)  # order kept, clean


def test_link_delay_serialises_frames_by_time_on_air():
    with open_transport("udp://127.0.0.1:0", listen=True) as edge:
        port = edge.local_address[1]
        from channel.links import get_link
        proxy = ChannelProxy("udp://127.0.0.1:0", f"udp://127.0.0.1:{port}",
                             uplink=None, link=get_link("lora-sf7"))
        thread = threading.Thread(target=proxy.run, kwargs={"stats_interval": 0}, daemon=True)
        thread.start()
        try:
            with open_transport(proxy.listen_address) as device:
                t0 = time.monotonic()
                for _ in range(3):
                    device.send(bytes(51))
                arrivals = [edge.recv(3.0) and time.monotonic() - t0 for _ in range(3)]
        finally:
            proxy.stop()
            thread.join(5)
            proxy.close()
    toa = get_link("lora-sf7").time_on_air_s(51)  # 102.656 ms
    assert arrivals[0] >= toa * 0.95
    assert arrivals[2] >= 3 * toa * 0.95  # one radio: frames queue behind each other


@pytest.mark.parametrize("args,needle", [
    (["--listen", "udp://127.0.0.1:0", "--to", "udp://127.0.0.1:9", "--ber", "0.7"], "BER"),
    (["--listen", "udp://127.0.0.1:0", "--to", "udp://127.0.0.1:9", "--ber", "0.1", "--model", "x"], "model"),
    (["--listen", "udp://127.0.0.1:0", "--to", "bogus://x", "--ber", "0.1"], "URL"),
    (["--listen", "udp://127.0.0.1:0", "--to", "udp://127.0.0.1:9"], "--ber"),
    (["--listen", "udp://127.0.0.1:0", "--to", "udp://127.0.0.1:9", "--ber", "abc"], "--ber"),
    (["--listen", "udp://127.0.0.1:0", "--to", "udp://127.0.0.1:9", "--ber", "0", "--link", "lora-sf99"], "link"),
    (["--listen", "udp://127.0.0.1:0", "--to", "udp://127.0.0.1:9", "--lora-phy"], "--snr-db"),
    (["--listen", "udp://127.0.0.1:0", "--to", "udp://127.0.0.1:9", "--lora-phy", "--ber", "0.1"], "SNR"),
    (["--listen", "udp://127.0.0.1:0", "--to", "udp://127.0.0.1:9", "--lora-phy", "--snr-db", "-5",
      "--cr", "4/9"], "coding rate"),
    (["--listen", "udp://127.0.0.1:0", "--to", "udp://127.0.0.1:9", "--lora-phy", "--snr-db", "-5",
      "--sf", "13"], "spreading factor"),
    (["--listen", "udp://127.0.0.1:0", "--to", "udp://127.0.0.1:9", "--lora-phy", "--snr-db", "-5",
      "--offset-bins", "0.8"], "offset"),
])
def test_bad_arguments_give_one_line(args, needle):
    r = subprocess.run([sys.executable, "-m", "snn", "channel", "proxy", *args], capture_output=True,
                       text=True, cwd=ROOT, timeout=30)
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and needle in r.stderr, r.stderr


def test_port_in_use_says_which():
    with open_transport("udp://127.0.0.1:0", listen=True) as held:
        port = held.local_address[1]
        r = subprocess.run([sys.executable, "-m", "snn", "channel", "proxy", "--listen",
                            f"udp://127.0.0.1:{port}", "--to", "udp://127.0.0.1:9", "--ber", "0"],
                           capture_output=True, text=True, cwd=ROOT, timeout=30)
    assert r.returncode == 2 and f"port {port} is already in use" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_duty_cycle_holds_the_transmitter_silent():
    from channel.links import LoRaLink

    link = LoRaLink(sf=7, duty_cycle=0.5)  # wait after a frame = its time on air
    toa = link.time_on_air_s(51)
    with open_transport("udp://127.0.0.1:0", listen=True) as edge:
        port = edge.local_address[1]
        proxy = ChannelProxy("udp://127.0.0.1:0", f"udp://127.0.0.1:{port}", uplink=None, link=link,
                             duty_cycle=True)
        thread = threading.Thread(target=proxy.run, kwargs={"stats_interval": 0}, daemon=True)
        thread.start()
        try:
            with open_transport(proxy.listen_address) as device:
                t0 = time.monotonic()
                device.send(bytes(51))
                device.send(bytes(51))
                arrivals = [edge.recv(3.0) and time.monotonic() - t0 for _ in range(2)]
        finally:
            proxy.stop()
            thread.join(5)
            proxy.close()
    assert arrivals[0] >= 0.95 * toa and arrivals[1] >= 0.95 * 3 * toa  # air, silence, air
