"""edge/gateway.py: a real stand-in edge with `--gateway`, spoken to as packet forwarders would.

Each test gateway is a real UDP socket speaking the Semtech protocol v2 (channel.semtech_udp); the
frames are real v2 DATA frames of provisioned test devices, damaged as a radio with its CRC off
would hand them over."""
from __future__ import annotations

import socket
import time

import pytest
from test_server import metric

from channel import semtech_udp as pf
from conftest import start_standin
from edge.gateway import GatewayOptions, parse_allow
from snn.cli import main
from snn.errors import SnnError
import wire_client
from wire_client import data_frame, data_frames, open_reply

EUI1, EUI2, EUI3, EUI4 = (bytes.fromhex(f"aa555a000000000{i}") for i in (1, 2, 3, 4))


@pytest.fixture(scope="module")
def gw_edge(tmp_path_factory):
    server = start_standin(tmp_path_factory.mktemp("gw"), "--gateway", "127.0.0.1:0",
                           "--gateway-allow", f"{EUI1.hex()}@127.0.0.1", "--gateway-allow", f"{EUI2.hex()}@127.0.0.0/8",
                           "--gateway-allow", f"{EUI4.hex()}@127.0.0.1",
                           "--gateway-allow", f"{EUI3.hex()}@192.0.2.1",   # never where the tests send from
                           "--gateway-dedup-ms", "150", "--reassembly-timeout", "0.3")
    host, port = server.addresses["gateway"][len("udp://"):].rsplit(":", 1)
    server.gateway = (host, int(port))
    yield server
    server.stop()


class Gateway:
    """A packet forwarder: one UDP socket for up- and downlink, its EUI, its own tmst clock."""

    def __init__(self, edge, eui: bytes) -> None:
        self.edge, self.eui = edge.gateway, eui
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.token = 0x100
        self.tmst = 4_000_000_000   # near the 32-bit wrap: the reply's tmst wraps too

    def send(self, raw: bytes) -> None:
        self.sock.sendto(raw, self.edge)

    def recv(self, kind: int, timeout: float = 3.0):
        """The next datagram of `kind` within `timeout` (others skipped), or None."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                data, _ = self.sock.recvfrom(65536)
            except TimeoutError:
                return None
            msg = pf.parse_message(data)
            if msg.kind == kind:
                return msg
        return None

    def pull(self) -> None:
        self.token += 1
        self.send(pf.pull_data(self.token, self.eui))
        ack = self.recv(pf.PULL_ACK)
        assert ack is not None and ack.token == self.token

    def push(self, frames: list[bytes], stat: int = -1, lsnr: float = -7.0, rssi: float = -124.0,
             acked: bool = True) -> list[pf.RxPacket]:
        self.token += 1
        rxs = []
        for frame in frames:
            self.tmst = (self.tmst + 50_000) & 0xFFFFFFFF
            rxs.append(pf.RxPacket(data=frame, stat=stat, tmst=self.tmst, freq=868.1, datr="SF7BW125", codr="4/5",
                                   rssi=rssi, lsnr=lsnr, chan=0))
        self.send(pf.push_data(self.token, self.eui, rxs))
        ack = self.recv(pf.PUSH_ACK, 1.0 if acked else 0.3)
        assert (ack is not None and ack.token == self.token) == acked
        return rxs

    def close(self) -> None:
        self.sock.close()


def _flip(frame: bytes, *bits: int) -> bytes:
    out = bytearray(frame)
    for b in bits:
        out[b // 8] ^= 0x80 >> (b % 8)
    return bytes(out)


def _metrics(edge) -> str:
    return edge.get("/metrics").text


def test_a_frame_with_a_failed_crc_is_answered_by_a_txpk_in_rx1(gw_edge):
    g = Gateway(gw_edge, EUI1)
    try:
        g.pull()
        frame = data_frame(3)
        # the radio's CRC failed: payload bits and two header bits flipped (BCH corrects them)
        (rx,) = g.push([_flip(frame, 5, 40, 8 * len(frame) - 3)], stat=-1)
        resp = g.recv(pf.PULL_RESP)
        assert resp is not None
        txpk, data = pf.parse_txpk(resp)
        assert txpk["tmst"] == (rx.tmst + 1_000_000) & 0xFFFFFFFF and not txpk["imme"]
        assert (txpk["freq"], txpk["datr"], txpk["codr"], txpk["ipol"], txpk["ncrc"]) == (868.1, "SF7BW125", "4/5",
                                                                                          True, True)
        assert open_reply(data).label == 3
        g.send(pf.tx_ack(resp.token, EUI1))
        time.sleep(0.2)
        m = _metrics(gw_edge)
        eui = EUI1.hex()
        assert metric(m, "snn_edge_gateway_rxpk_total", eui=eui, stat="crc_bad") >= 1
        assert metric(m, "snn_edge_gateway_txpk_total", eui=eui) >= 1
        assert metric(m, "snn_edge_gateway_tx_ack_total", eui=eui, error="NONE") >= 1
        assert metric(m, "snn_edge_frames_total", transport="gateway") >= 1
    finally:
        g.close()


def test_gateways_not_on_the_allow_list_get_silence(gw_edge):
    stranger, elsewhere = Gateway(gw_edge, bytes.fromhex("0102030405060708")), Gateway(gw_edge, EUI3)
    try:
        before = metric(_metrics(gw_edge), "snn_edge_gateway_refused_total", reason="not_allowed")
        for g in (stranger, elsewhere):   # an unknown EUI; a known EUI from the wrong address
            g.send(pf.pull_data(1, g.eui))
            assert g.recv(pf.PULL_ACK, 0.3) is None
            g.push([data_frame(1)], acked=False)
            assert g.recv(pf.PULL_RESP, 1.5) is None
        after = metric(_metrics(gw_edge), "snn_edge_gateway_refused_total", reason="not_allowed")
        assert after - before == 4
    finally:
        stranger.close()
        elsewhere.close()


def test_two_gateways_hearing_one_frame_give_one_answer_via_the_better(gw_edge):
    weak, strong = Gateway(gw_edge, EUI1), Gateway(gw_edge, EUI2)
    try:
        weak.pull()
        strong.pull()
        frame = data_frame(4)
        weak.push([frame], stat=1, lsnr=-12.0)
        strong.push([_flip(frame, 7, 8 * len(frame) - 1)], stat=-1, lsnr=-2.0)   # other bits flipped
        resp = strong.recv(pf.PULL_RESP)
        assert resp is not None and open_reply(pf.parse_txpk(resp)[1]).label == 4
        assert weak.recv(pf.PULL_RESP, 0.8) is None and strong.recv(pf.PULL_RESP, 0.2) is None
        # a copy that arrives after the window is counted late, never answered again
        weak.push([frame], stat=1, lsnr=5.0)
        assert weak.recv(pf.PULL_RESP, 1.0) is None and strong.recv(pf.PULL_RESP, 0.1) is None
        m = _metrics(gw_edge)
        assert metric(m, "snn_edge_gateway_copies_total", eui=EUI1.hex(), fate="offered") >= 1   # CRC good wins
        assert metric(m, "snn_edge_gateway_copies_total", eui=EUI2.hex(), fate="duplicate") >= 1
        assert metric(m, "snn_edge_gateway_copies_total", eui=EUI1.hex(), fate="late") >= 1
    finally:
        weak.close()
        strong.close()


def test_a_forged_copy_cannot_steer_the_reply(gw_edge):
    """An allowed gateway claims a better reception of a frame it forged (same device and counter,
    MIC guessed): its copy is its own group, fails authentication, and the reply goes to the
    gateway that delivered the authentic frame."""
    honest, liar = Gateway(gw_edge, EUI1), Gateway(gw_edge, EUI4)
    try:
        honest.pull()
        liar.pull()
        counter = next(wire_client._COUNTER)
        frame = data_frame(6, counter=counter)
        forged = data_frame(6, key=bytes(16), counter=counter)   # the same header fields, the MIC guessed
        liar.push([forged], stat=1, lsnr=10.0, rssi=-30.0)
        honest.push([frame], stat=-1, lsnr=-15.0)
        resp = honest.recv(pf.PULL_RESP)
        assert resp is not None and open_reply(pf.parse_txpk(resp)[1]).label == 6
        assert liar.recv(pf.PULL_RESP, 1.0) is None
    finally:
        honest.close()
        liar.close()


def test_fragments_through_a_gateway_make_one_inference(gw_edge):
    g = Gateway(gw_edge, EUI1)
    try:
        g.pull()
        frames = data_frames(2, mtu=40)   # 37 payload bytes: two fragments
        assert len(frames) > 1
        g.push(frames, stat=0)
        resp = g.recv(pf.PULL_RESP)
        assert resp is not None and open_reply(pf.parse_txpk(resp)[1]).label == 2
        assert g.recv(pf.PULL_RESP, 1.0) is None
    finally:
        g.close()


def test_malformed_datagrams_cost_nothing_and_the_listener_lives(gw_edge):
    g = Gateway(gw_edge, EUI1)
    try:
        before = metric(_metrics(gw_edge), "snn_edge_gateway_refused_total", reason="malformed")
        deep = b"[" * 64 + b"]" * 64
        for junk in (b"", b"\x02\x00", b"\x01\x00\x01\x00" + EUI1, bytes([2, 0, 1, 0]) + EUI1 + b"{" + deep + b"}",
                     bytes([2, 0, 1, 0]) + EUI1 + b"not json", bytes([2, 0, 1, 9]), bytes(9000)):
            g.send(junk)
        assert g.recv(pf.PUSH_ACK, 0.3) is None
        assert metric(_metrics(gw_edge), "snn_edge_gateway_refused_total", reason="malformed") - before == 7
        g.pull()   # still there
    finally:
        g.close()


def test_gateway_options_fail_closed():
    allow = (parse_allow(f"{EUI1.hex()}@127.0.0.1"),)
    with pytest.raises(SnnError, match="--gateway-allow"):
        GatewayOptions(("127.0.0.1", 0), ())
    with pytest.raises(SnnError, match="de-duplication window"):
        GatewayOptions(("127.0.0.1", 0), allow, dedup_s=0.95, rx1_delay_s=1.0)
    for bad in ("aa555a0000000001", "zz@127.0.0.1", "aa555a0000000001@not-an-ip"):
        with pytest.raises(SnnError):
            parse_allow(bad)
    assert parse_allow("AA-55-5A-00-00-00-00-01@10.0.0.0/8").admits("10.1.2.3")
    assert not parse_allow("aa555a0000000001@10.0.0.1").admits("10.0.0.2")


def test_serve_refuses_a_gateway_without_an_allow_list(capsys):
    assert main(["edge", "serve", "--gateway", "127.0.0.1:0", "--http", "127.0.0.1:0", "--udp", "none"]) == 2
    assert "--gateway-allow" in capsys.readouterr().err
