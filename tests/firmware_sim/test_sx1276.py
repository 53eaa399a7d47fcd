"""The SX1276 raw-LoRa driver (firmware/sx1276.c) against the datasheet's register sequences, on the
host: the driver talks to an SX1276 register model (sx1276_model/spi_model.c) through its SPI calls.
The driver has never run on a chip; this is what checks it."""
import ctypes
import subprocess
from pathlib import Path

import pytest

from toolchain import need

from firmware_sim.codegen import FIRMWARE_DIR

HERE = Path(__file__).with_name("sx1276_model")
OPMODE, FIFO_PTR, PAYLOAD_LEN, IRQ, MC1, MC2, MC3 = 0x01, 0x0D, 0x22, 0x12, 0x1D, 0x1E, 0x26


@pytest.fixture()
def chip(tmp_path):
    gcc = need("gcc")
    lib = tmp_path / "sx1276.so"
    subprocess.run([gcc, "-O1", "-std=c99", "-Wall", "-Werror", "-shared", "-fPIC", "-I", str(FIRMWARE_DIR),
                    str(FIRMWARE_DIR / "sx1276.c"), str(HERE / "spi_model.c"), "-o", str(lib)], check=True)
    c = ctypes.CDLL(str(lib))
    c.test_init.argtypes = [ctypes.c_uint32] + [ctypes.c_int] * 7
    c.snn_sx1276_send.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
    c.snn_sx1276_poll.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
    c.model_receive.argtypes = [ctypes.c_char_p, ctypes.c_int]
    c.model_reg.restype = ctypes.c_uint8
    c.model_reset(0x12)
    return c


def writes(c) -> list[tuple[int, int]]:
    return [(c.model_log_reg(i), c.model_log_val(i)) for i in range(c.model_log_count())]


def first(log, reg, pred=lambda v: True, after=-1) -> int:
    return next(i for i, (r, v) in enumerate(log) if i > after and r == reg and pred(v))


@pytest.mark.parametrize("sf, freq, power", [(7, 868_100_000, 13), (12, 869_525_000, 14), (10, 915_000_000, 2)])
def test_init_programs_lora_mode_as_the_datasheet_says(chip, sf, freq, power):
    assert chip.test_init(freq, sf, 7, 1, 8, power, 0x12, 1) == 0
    log = writes(chip)
    # LongRangeMode may change only in sleep (datasheet 6.4, RegOpMode): FSK sleep, then LoRa sleep
    assert log[0] == (OPMODE, 0x00) and log[1] == (OPMODE, 0x80)
    frf = chip.model_reg(0x06) << 16 | chip.model_reg(0x07) << 8 | chip.model_reg(0x08)
    assert frf == int(freq * 2 ** 19 / 32e6)                          # Frf = F * 2^19 / F_XOSC (4.1.4)
    pa = chip.model_reg(0x09)
    pmax = 10.8 + 0.6 * (pa >> 4 & 7)
    assert pa >> 7 == 0 and pmax - (15 - (pa & 15)) == pytest.approx(power)   # RFO pin, Pout formula
    mc1, mc2, mc3 = chip.model_reg(MC1), chip.model_reg(MC2), chip.model_reg(MC3)
    assert mc1 >> 4 == 7 and (mc1 >> 1 & 7) == 1 and mc1 & 1 == 1     # 125 kHz, 4/5, implicit header
    assert mc2 >> 4 == sf and mc2 & 0x04 == 0                         # RxPayloadCrcOn off
    assert bool(mc3 & 0x08) == (sf >= 11) and mc3 & 0x04              # LDRO when T_sym > 16 ms; AGC on
    assert chip.model_reg(0x20) << 8 | chip.model_reg(0x21) == 8
    assert chip.model_reg(0x31) & 7 == 3 and chip.model_reg(0x37) == 0x0A   # SF7-12 detection settings
    assert chip.model_reg(0x39) == 0x12 and chip.model_reg(0x0C) == 0x20    # sync word; LNA G1, no boost
    assert chip.model_reg(OPMODE) == 0x81                                # ends in LoRa standby


def test_wrong_chip_is_refused(chip):
    chip.model_reset(0x22)                                            # an SX1272's RegVersion
    assert chip.test_init(868_100_000, 7, 7, 1, 8, 13, 0x12, 1) == -1
    assert all(r != OPMODE for r, _ in writes(chip))


def test_transmit_sequence_and_frame(chip):
    chip.test_init(868_100_000, 7, 7, 1, 8, 13, 0x12, 1)
    start = chip.model_log_count()
    frame = bytes(range(7, 7 + 52))
    assert chip.snn_sx1276_send(frame, len(frame)) == 0
    log = writes(chip)[start:]
    # datasheet 4.1.6 "data transmission sequence": standby, FifoAddrPtr = FifoTxBaseAddr, payload
    # length, fill the FIFO, TX request; TxDone then clears
    stdby = first(log, OPMODE, lambda v: v == 0x81)
    ptr = first(log, FIFO_PTR, lambda v: v == 0x00, stdby)
    plen = first(log, PAYLOAD_LEN, lambda v: v == len(frame), ptr)
    data = [v for r, v in log if r == 0x00]
    tx = first(log, OPMODE, lambda v: v == 0x83, plen)
    assert stdby < ptr < plen < first(log, 0x00) < tx and data == list(frame)
    assert first(log, MC1, lambda v: v & 1 == 1, stdby) < tx            # implicit header on the uplink
    assert first(log, IRQ, lambda v: v == 0x08, tx) > tx                  # TxDone cleared after
    out = ctypes.create_string_buffer(256)
    assert chip.model_sent(out) == len(frame) and out.raw[:len(frame)] == frame
    assert chip.snn_sx1276_send(b"", 0) == -1 and chip.model_tx_count() == 1


def test_listen_and_receive_a_reply(chip):
    chip.test_init(868_100_000, 7, 7, 1, 8, 13, 0x12, 1)
    chip.snn_sx1276_send(b"\x01\x02", 2)
    chip.snn_sx1276_listen()
    assert chip.model_reg(OPMODE) == 0x85 and chip.model_reg(MC1) & 1 == 0   # RX continuous, explicit header
    buf = ctypes.create_string_buffer(64)
    assert chip.snn_sx1276_poll(buf, 64) == 0                          # nothing yet
    reply = bytes(range(100, 113))
    assert chip.model_receive(reply, len(reply)) == 0
    assert chip.snn_sx1276_poll(buf, 64) == 13 and buf.raw[:13] == reply
    assert chip.model_reg(IRQ) == 0 and chip.snn_sx1276_poll(buf, 64) == 0   # flags cleared, consumed once


def test_board_image_with_the_radio_link(tmp_path):
    need("arm-none-eabi-gcc")
    from firmware_sim.build import LoraRadio, build_firmware
    from snn.errors import SnnError

    res = build_firmware("codec/zoo/fmnist_default.int8.onnx", "stm32f411", tmp_path / "fw",
                         radio=LoraRadio(sf=12))
    assert res["fits"] and res["link"].startswith("sx1276")
    nm = lambda elf: subprocess.run(["arm-none-eabi-nm", elf], capture_output=True, text=True).stdout  # noqa: E731
    assert "snn_sx1276_send" in nm(res["elf"]) and "snn_spi_xfer" in nm(res["elf"])
    assert "snn_sx1276_send" not in nm(res["qemu_elf"])               # QEMU keeps the UART link
    cfg = (tmp_path / "fw" / "snn_config.h").read_text()
    assert "#define SNN_MTU 51u" in cfg and "#define SNN_LORA_SF 12u" in cfg   # the SF12 EU868 MTU
    with pytest.raises(SnnError, match="stm32f411 only"):
        build_firmware("codec/zoo/fmnist_default.int8.onnx", "nrf52840", tmp_path / "n", radio=LoraRadio())
