"""channel/links: LoRa airtime (AN1200.13), MTUs, BLE / 802.15.4 / UART timings."""
import pytest

from channel.links import BleLink, LoRaLink, get_link
from snn.errors import SnnError

# AN1200.13 formula, explicit header, CRC on, 8 preamble symbols, BW 125 kHz, CR 4/5,
# LDRO on at SF12 (T_sym 32.768 ms > 16 ms). Milliseconds.
LORA_TABLE = {
    (7, 37): 82.176, (7, 51): 102.656, (7, 147): 240.896, (7, 222): 348.416,
    (10, 37): 493.568, (10, 51): 616.448, (10, 147): 1394.688, (10, 222): 2009.088,
    (12, 37): 1974.272, (12, 51): 2465.792, (12, 147): 5578.752, (12, 222): 8036.352,
}


@pytest.mark.parametrize("sf,n", sorted(LORA_TABLE))
def test_lora_airtime_table(sf, n):
    assert get_link(f"lora-sf{sf}").time_on_air_s(n) * 1e3 == pytest.approx(LORA_TABLE[sf, n], abs=1e-9)


def test_lora_published_calculator_points():
    # a published AN1200.13 calculator: SF9, 13 B, CR 4/5 -> 28 payload symbols, 164.864 ms
    sf9 = get_link("lora-sf9")
    assert sf9.payload_symbols(13) == 28
    assert sf9.time_on_air_s(13) * 1e3 == pytest.approx(164.864)
    # by hand: SF12 CR4/8 LDRO, 13 B: ceil((104 - 48 + 28 + 16) / 40) = 3 -> 8 + 3 * 8 = 32 symbols
    sf12 = get_link("lora-sf12-bw125-cr4/8")
    assert sf12.low_data_rate_optimize and sf12.symbol_time_s == pytest.approx(0.032768)
    assert sf12.payload_symbols(13) == 32
    assert sf12.time_on_air_s(13) * 1e3 == pytest.approx((12.25 + 32) * 32.768)


def test_lora_ldro_rule_and_options():
    assert not get_link("lora-sf10").low_data_rate_optimize
    assert get_link("lora-sf11").low_data_rate_optimize
    assert not get_link("lora-sf11-bw250").low_data_rate_optimize
    assert get_link("lora-sf12-bw250").low_data_rate_optimize
    assert not get_link("lora-sf12-bw500").low_data_rate_optimize
    # implicit header saves 20 bits; forcing LDRO off at SF12 shortens the frame
    explicit = LoRaLink(sf=8).time_on_air_s(20)
    assert LoRaLink(sf=8, explicit_header=False).time_on_air_s(20) < explicit
    assert LoRaLink(sf=12, ldro=False).time_on_air_s(51) < get_link("lora-sf12").time_on_air_s(51)
    # doubling the bandwidth halves the time on air
    assert get_link("lora-sf9-bw250").time_on_air_s(40) == pytest.approx(
        get_link("lora-sf9-bw125").time_on_air_s(40) / 2)
    assert get_link("lora-sf7-cr4/8").time_on_air_s(51) > get_link("lora-sf7-cr45").time_on_air_s(51)


def test_lora_mtu_and_duty_cycle():
    mtus = {sf: get_link(f"lora-sf{sf}").mtu for sf in range(7, 13)}
    assert mtus == {7: 222, 8: 222, 9: 115, 10: 51, 11: 51, 12: 51}
    link = get_link("lora-sf7")
    assert link.wait_after_s(51) == pytest.approx(99 * link.time_on_air_s(51))
    assert link.bitrate_bps == pytest.approx(5468.75)
    assert link.time_on_air_s(255) > link.time_on_air_s(222)  # PHY max is beyond the MTU
    with pytest.raises(ValueError):
        link.time_on_air_s(256)
    assert link.fragments(784) == 4


def test_ble_802154_uart():
    ble = get_link("ble-1m")
    assert isinstance(ble, BleLink) and ble.mtu == 244
    assert ble.time_on_air_s(244) == pytest.approx((1 + 4 + 2 + 251 + 3) * 8e-6)  # 2088 us
    assert get_link("ble-2m").time_on_air_s(244) == pytest.approx((2 + 4 + 2 + 251 + 3) * 4e-6)
    assert get_link("ble-coded-s8").time_on_air_s(20) == pytest.approx(
        (80 + 256 + 16 + 24 + (2 + 27 + 3) * 64 + 24) * 1e-6)
    assert get_link("ble-1m-legacy").mtu == 20
    z = get_link("802.15.4")
    assert z.mtu == 116 and z.time_on_air_s(116) == pytest.approx(133 * 32e-6)  # 127 PSDU + 6
    assert get_link("802.15.4-868").time_on_air_s(10) == pytest.approx(27 * 8 / 20000)
    u = get_link("uart-115200")
    assert u.bits_per_char == 10 and u.time_on_air_s(100) == pytest.approx(102 * 10 / 115200)
    assert get_link("uart-9600-8e2").bits_per_char == 12
    assert u.wire_bytes(254) == 257  # COBS: one code byte per 254 plus the delimiter


@pytest.mark.parametrize("name", ["lora-sf13", "lora-sf7-bw100", "lora", "ble-3m", "zigbee",
                                  "802.15.4-433", "uart-fast"])
def test_unknown_links(name):
    with pytest.raises(SnnError):
        get_link(name)
