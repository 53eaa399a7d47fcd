"""channel/transports/ over real loopback UDP sockets, real pty pairs via pyserial, and sim://."""
import os
import time

import numpy as np
import pytest

from channel.pty import PtyCable, open_pty_pair
from channel.transports import open_transport
from codec.wire.cobs import cobs_frame
from snn.errors import SnnError


def test_udp_round_trip_and_timeout():
    with open_transport("udp://127.0.0.1:0", listen=True) as server:
        port = server.local_address[1]
        with open_transport(f"udp://127.0.0.1:{port}?mtu=64") as client:
            assert not client.stream and client.mtu == 64
            client.send(b"\x00hello\x00")
            data, addr = server.recv(2.0)
            assert data == b"\x00hello\x00"
            server.send(b"label", addr)
            assert client.recv(2.0)[0] == b"label"
            t0 = time.monotonic()
            assert client.recv(0.05) is None
            assert time.monotonic() - t0 < 1.0
            with pytest.raises(ValueError):
                client.send(bytes(65))


def test_udp_port_in_use_is_a_clear_error():
    with open_transport("udp://127.0.0.1:0", listen=True) as server:
        port = server.local_address[1]
        with pytest.raises(SnnError, match=f"port {port} is already in use"):
            open_transport(f"udp://127.0.0.1:{port}", listen=True)


def test_udp_recv_survives_unreachable_peer():
    with open_transport("udp://127.0.0.1:0", listen=True) as s:
        port = s.local_address[1]
    with open_transport(f"udp://127.0.0.1:{port}") as client:  # nobody listens there now
        client.send(b"x")
        assert client.recv(0.1) is None
        client.send(b"y")  # ICMP port unreachable must not raise


@pytest.mark.parametrize("url", ["tcp://x:1", "udp://127.0.0.1", "udp://127.0.0.1:99999",
                                 "udp://127.0.0.1:9?foo=1", "serial://", "serial:///dev/does-not-exist",
                                 "serial:///dev/null?baud=abc", "sim://?ber=2", "sim://?model=zz&ber=0.1",
                                 "sim://?link=lora-sf99"])
def test_bad_urls(url):
    with pytest.raises(SnnError):
        open_transport(url)


def test_serial_over_a_pty_cable_both_ways():
    with PtyCable() as cable:
        a_path, b_path = cable.paths
        with open_transport(f"serial://{a_path}?baud=115200") as a, \
                open_transport(f"serial://{b_path}?baud=115200") as b:
            assert a.stream and b.stream
            frames = [bytes([i]) * (i * 7) + b"\x00\x00" for i in range(1, 40)]
            for f in frames:
                a.send(f)
            assert [b.recv(2.0)[0] for _ in frames] == frames
            b.send(b"\x00reply\x00")
            assert a.recv(2.0)[0] == b"\x00reply\x00"
            assert b.recv(0.05) is None


def test_stream_resynchronises_after_corruption():
    pair = open_pty_pair()
    try:
        with open_transport(f"serial://{pair.path}") as port:
            good = b"\x10\x00\x20frame"
            damaged = bytearray(cobs_frame(b"\x01\x02\x03\x00\x04" * 10))
            damaged[3] = 0x00  # a flipped byte inside the COBS stream: a false delimiter
            damaged[1] = 0xF0  # and a length code pointing past the end
            os.write(pair.master_fd, b"garbage-without-delimiter" + b"\x00" + bytes(damaged)
                     + cobs_frame(good) + cobs_frame(b"next"))
            got = []
            while (r := port.recv(1.0)) is not None:
                got.append(r[0])
                if got[-1] == b"next":
                    break
            assert got[-2:] == [good, b"next"]
            assert port.dropped >= 1
    finally:
        pair.close()


def test_pty_transport_is_a_serial_port_for_the_peer():
    with open_transport("pty://") as master:
        assert master.path.startswith("/dev/")
        with open_transport(f"serial://{master.path}") as peer:
            peer.send(b"up")
            assert master.recv(2.0)[0] == b"up"
            master.send(b"down")
            assert peer.recv(2.0)[0] == b"down"


def test_sim_link_statistics_and_delay():
    with open_transport("sim://t1", listen=True) as server, \
            open_transport("sim://t1?ber=0.02&model=ge&burst=8&seed=4&downlink_ber=0.01") as client:
        flips = 0
        for _ in range(400):
            client.send(bytes(250))
            data, addr = server.recv(1.0)
            flips += int(np.unpackbits(np.frombuffer(data, np.uint8)).sum())
            server.send(bytes(10), addr)
            assert client.recv(1.0) is not None
        stats = client.stats()
        assert stats["uplink"]["bits_flipped"] == flips
        assert 0.01 < flips / (400 * 2000) < 0.03
        assert stats["downlink"]["frames"] == 400
    with open_transport("sim://t2", listen=True) as server, \
            open_transport("sim://t2?link=lora-sf7&drop=0.5&seed=1") as client:
        assert client.mtu == 222
        t0 = time.monotonic()
        for _ in range(4):
            client.send(bytes(51))
        got = [server.recv(0.6) for _ in range(4)]
        delivered = [g for g in got if g is not None]
        assert len(delivered) == 4 - client.stats()["uplink"]["dropped"]
        if delivered:
            assert time.monotonic() - t0 >= 0.1  # 102.7 ms on air per 51-byte frame


def test_sim_loop_for_benchmarks():
    with open_transport("sim://loop?ber=0.5&seed=0") as loop:
        loop.send(bytes(100))
        data, _ = loop.recv(0)
        assert len(data) == 100 and data != bytes(100)


def test_serial_survives_the_peer_hanging_up():
    master = open_transport("pty://")
    with open_transport(f"serial://{master.path}") as port:
        master.send(b"last words")
        assert port.recv(2.0)[0] == b"last words"
        master.close()  # the other end goes away (cable pulled)
        assert port.recv(0.2) is None
