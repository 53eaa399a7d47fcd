"""channel/semtech_udp.py: the packet-forwarder datagrams, built and parsed strictly, within bounds."""
import base64
import json

import pytest

from channel import semtech_udp as pf

EUI = bytes.fromhex("aa555a0000000001")


def _rx(**kw):
    base = dict(data=b"\x01\x02\x03hello", stat=-1, tmst=3512348611, freq=868.1, datr="SF7BW125", codr="4/5",
                rssi=-35.0, lsnr=-7.4, chan=2)
    base.update(kw)
    return pf.RxPacket(**base)


def test_push_data_round_trip_keeps_every_field_the_edge_uses():
    raw = pf.push_data(0xBEEF, EUI, [_rx(), _rx(stat=0, data=bytes(255), lsnr=9.5)], stat={"rxnb": 2})
    assert raw[:4] == bytes([2, 0xBE, 0xEF, 0]) and raw[4:12] == EUI
    msg = pf.parse_message(raw)
    assert (msg.kind, msg.token, msg.eui, msg.skipped) == (pf.PUSH_DATA, 0xBEEF, EUI, 0)
    assert msg.rxpk[0] == _rx(rssi=-35.0) and msg.rxpk[1].data == bytes(255) and msg.rxpk[1].stat == 0
    assert msg.body["stat"] == {"rxnb": 2}


def test_the_protocol_description_example_parses():
    # the first rxpk of PROTOCOL.TXT's example, unpadded base64 and all
    body = {"rxpk": [{"time": "2013-03-31T16:21:17.528002Z", "tmst": 3512348611, "chan": 2, "rfch": 0,
                      "freq": 866.349812, "stat": 1, "modu": "LORA", "datr": "SF7BW125", "codr": "4/6",
                      "rssi": -35, "lsnr": 5.1, "size": 32, "data": "-DS4CGaDCdG+48eJNM3Vai-zDpsR71Pn9CPA9uCON84"},
                     {"tmst": 3512348514, "chan": 9, "rfch": 1, "freq": 869.1, "stat": 1, "modu": "FSK",
                      "datr": 50000, "rssi": -75, "size": 16, "data": "VEVTVF9QQUNLRVRfMTIzNA=="}]}
    msg = pf.parse_message(bytes([2, 0, 1, 0]) + EUI + json.dumps(body).encode())
    # the first uses '-', which is not base64: it is refused; the FSK packet is not ours
    assert msg.rxpk == [] and msg.skipped == 2
    body["rxpk"][0]["data"] = base64.b64encode(bytes(range(32))).decode().rstrip("=")
    msg = pf.parse_message(bytes([2, 0, 1, 0]) + EUI + json.dumps(body).encode())
    assert len(msg.rxpk) == 1 and msg.rxpk[0].data == bytes(range(32)) and msg.rxpk[0].lsnr == 5.1


@pytest.mark.parametrize("field, value", [("stat", 2), ("stat", True), ("tmst", -1), ("tmst", 2 ** 32),
                                          ("tmst", 1.5), ("datr", "SF13BW125"), ("codr", "4/9"),
                                          ("size", 3), ("data", "!!!"), ("data", "A" * 400), ("lsnr", "5"),
                                          ("rssi", None), ("freq", -1), ("chan", 999)])
def test_an_ill_typed_rxpk_is_skipped_and_the_rest_kept(field, value):
    good = pf.rxpk_json(_rx())
    bad = dict(good, **{field: value})
    if value is None:
        del bad[field]
    raw = bytes([2, 0, 1, 0]) + EUI + json.dumps({"rxpk": [bad, good]}).encode()
    msg = pf.parse_message(raw)
    assert msg.skipped == 1 and len(msg.rxpk) == 1


@pytest.mark.parametrize("raw, needle", [
    (b"\x02\x00", "shorter"),
    (b"\x01\x00\x01\x00" + EUI + b"{}", "version"),
    (b"\x02\x00\x01\x09", "identifier"),
    (b"\x02\x00\x01\x00" + EUI[:4], "EUI"),
    (b"\x02\x00\x01\x00" + EUI + b"[1]", "object"),
    (b"\x02\x00\x01\x00" + EUI + b"{\"rxpk\": 5}", "array"),
    (b"\x02\x00\x01\x00" + EUI + b"{\"rxpk\": [" + b"[" * 2000 + b"]" * 2000 + b"]}", "deep"),
    (b"\x02\x00\x01\x00" + EUI + b"{" + b"x" * 9000, "longer"),
    (b"\x02\x00\x01\x00" + EUI + b"{\"rxpk\": [" + b",".join([b"{}"] * 17) + b"]}", "more than"),
    (b"\x02\x00\x01\x00" + EUI + b"{bad json", "malformed"),
    (b"\x02\x00\x01\x00" + EUI + "{\"a\": \"\xff\"}".encode("latin-1"), "malformed"),
    (b"\x02\x00\x01\x01extra", "unexpected"),
])
def test_what_is_not_the_protocol_is_refused_with_a_reason(raw, needle):
    with pytest.raises(pf.ProtocolError, match=needle):
        pf.parse_message(raw)


def test_pull_and_tx_ack_and_txpk_for_the_rx1_window():
    msg = pf.parse_message(pf.pull_data(7, EUI))
    assert (msg.kind, msg.token, msg.eui) == (pf.PULL_DATA, 7, EUI)
    assert pf.parse_message(pf.pull_ack(7)).kind == pf.PULL_ACK
    assert pf.parse_message(pf.push_ack(9)).token == 9
    rx = _rx(tmst=0xFFFFFFFF - 10)
    txpk = pf.txpk_for(rx, b"reply", delay_s=1.0)
    assert txpk["tmst"] == (0xFFFFFFFF - 10 + 1_000_000) & 0xFFFFFFFF   # the counter wraps
    assert (txpk["freq"], txpk["datr"], txpk["ipol"], txpk["imme"], txpk["ncrc"]) == (868.1, "SF7BW125", True,
                                                                                       False, True)
    got, data = pf.parse_txpk(pf.parse_message(pf.pull_resp(3, txpk)))
    assert data == b"reply" and got["size"] == 5
    ack = pf.parse_message(pf.tx_ack(3, EUI, "TOO_LATE"))
    assert ack.kind == pf.TX_ACK and ack.body == {"txpk_ack": {"error": "TOO_LATE"}}
    assert pf.parse_eui("AA-55-5A-00-00-00-00-01") == EUI
    with pytest.raises(Exception, match="16 hex"):
        pf.parse_eui("xyz")
