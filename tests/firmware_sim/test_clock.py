"""The clock trees of firmware/clock.c, checked on the host against the reference manuals' formulas
and limits: QEMU models no clock tree, so the register values clock.c writes are read back from a
register model (clock_model/regs.c, which raises the ready flags the hardware would) and the
clocks they give are computed here from the manuals' definitions of each field."""
import ctypes
import subprocess
from pathlib import Path

import pytest

from toolchain import need

from firmware_sim.boards import load_board
from firmware_sim.build import TARGETS
from firmware_sim.codegen import FIRMWARE_DIR

HERE = Path(__file__).with_name("clock_model")
HSI_F4, HSI_H7 = 16_000_000, 64_000_000
# (max HCLK in MHz, wait states) at 2.7-3.6 V: RM0383 Table 5 (F411), RM0385 Table 7 (F746)
WAIT_STATES = {"stm32f411": [(30, 0), (64, 1), (90, 2), (100, 3)],
               "stm32f746": [(30, 0), (60, 1), (90, 2), (120, 3), (150, 4), (180, 5), (210, 6), (216, 7)]}
APB_MAX = {"stm32f411": (50e6, 100e6), "stm32f746": (54e6, 108e6)}   # APB1, APB2 (datasheets' fPCLK max)
AHB_DIV = {0: 1, 8: 2, 9: 4, 10: 8, 11: 16, 12: 64, 13: 128, 14: 256, 15: 512}
APB_DIV = {0: 1, 4: 2, 5: 4, 6: 8, 7: 16}


class Regs:
    def __init__(self, lib):
        self.lib = lib
        for name in ("snn_reg_peek", "snn_log_addr", "snn_log_value", "snn_uart_hz"):
            getattr(lib, name).restype = ctypes.c_uint32
        lib.snn_reg_peek.argtypes = [ctypes.c_uint32]
        lib.snn_log_addr.argtypes = lib.snn_log_value.argtypes = [ctypes.c_int]

    def __getitem__(self, addr: int) -> int:
        return self.lib.snn_reg_peek(addr)

    def bits(self, addr: int, shift: int, width: int) -> int:
        return (self[addr] >> shift) & ((1 << width) - 1)

    @property
    def log(self) -> list[tuple[int, int]]:
        return [(self.lib.snn_log_addr(i), self.lib.snn_log_value(i)) for i in range(self.lib.snn_log_count())]

    def first_write(self, addr: int, test=lambda v: True) -> int:
        """Index in the write log of the first write to `addr` whose value passes `test`."""
        return next(i for i, (a, v) in enumerate(self.log) if a == addr and test(v))


def _run(tmp_path: Path, board: str) -> Regs:
    gcc = need("gcc")
    target = TARGETS[board]
    defines = [f"-D{f}" for f in target.family] + [f"-DSNN_CPU_HZ={target.cpu_hz}u"]
    lib = tmp_path / f"clock_{board}.so"
    subprocess.run([gcc, "-O1", "-std=c99", "-Wall", "-Werror", "-shared", "-fPIC", "-DSNN_HOST_REGS", *defines,
                    "-I", str(FIRMWARE_DIR), str(FIRMWARE_DIR / "clock.c"), str(HERE / "regs.c"), "-o", str(lib)],
                   check=True)
    regs = Regs(ctypes.CDLL(str(lib)))
    regs.lib.snn_clock_init()
    return regs


@pytest.mark.parametrize("board", ["stm32f411", "stm32f746"])
def test_stm32f4_f7_pll_flash_and_buses(tmp_path, board):
    r = _run(tmp_path, board)
    rcc, pwr, acr = 0x40023800, 0x40007000, 0x40023C00
    m, n, p = r.bits(rcc + 4, 0, 6), r.bits(rcc + 4, 6, 9), 2 * (r.bits(rcc + 4, 16, 2) + 1)
    q = r.bits(rcc + 4, 24, 4)
    assert r.bits(rcc + 4, 22, 1) == 0                               # PLL source HSI
    vco_in = HSI_F4 / m
    assert 0.95e6 <= vco_in <= 2.1e6 and vco_in == 2e6               # 2 MHz: the manuals' jitter advice
    vco = vco_in * n
    assert 100e6 <= vco <= 432e6 and 50 <= n <= 432
    sysclk = vco / p
    assert sysclk == TARGETS[board].cpu_hz == load_board(board).clock_hz
    assert vco / q <= 48e6                                           # USB/SDIO/RNG clock within spec
    assert r.bits(rcc + 8, 0, 2) == 2 and r.bits(rcc + 8, 2, 2) == 2  # SW = SWS = PLL
    hclk = sysclk / AHB_DIV[r.bits(rcc + 8, 4, 4)]
    apb1 = hclk / APB_DIV[r.bits(rcc + 8, 10, 3)]
    apb2 = hclk / APB_DIV[r.bits(rcc + 8, 13, 3)]
    assert hclk == sysclk and apb1 <= APB_MAX[board][0] and apb2 <= APB_MAX[board][1]
    uart_bus = apb1 if board == "stm32f411" else apb2                # USART2 on APB1; USART1 on APB2
    assert r.lib.snn_uart_hz() == uart_bus
    ws = next(w for mhz, w in WAIT_STATES[board] if hclk <= mhz * 1e6)
    assert r.bits(acr, 0, 4) == ws and r.bits(acr, 8, 1) == 1       # latency, prefetch
    assert r.bits(pwr, 14, 2) == 3                                   # VOS scale 1
    # the order the manuals require: regulator before PLL, wait states and prescalers before the switch
    pll_on = r.first_write(rcc, lambda v: v & (1 << 24))
    switch = r.first_write(rcc + 8, lambda v: (v & 3) == 2)
    assert r.first_write(rcc + 0x40, lambda v: v & (1 << 28)) < r.first_write(pwr) < pll_on < switch
    assert r.first_write(acr) < switch and r.first_write(rcc + 8, lambda v: v & (7 << 10)) < switch
    if board == "stm32f746":                                         # over-drive above 180 MHz (RM0385 4.1.4)
        assert r.bits(pwr, 16, 2) == 3
        assert pll_on < r.first_write(pwr, lambda v: v & (1 << 16)) < r.first_write(pwr, lambda v: v & (1 << 17)) \
            < switch
        assert r.bits(acr, 9, 1) == 1 and r.bits(0xE000ED14, 17, 1) == 1   # ART, Cortex-M7 I-cache


def test_stm32h743_vos0_pll1_480mhz(tmp_path):
    r = _run(tmp_path, "stm32h743")
    rcc, pwr, acr = 0x58024400, 0x58024800, 0x52002000
    assert r.bits(pwr + 0x0C, 0, 3) == 0b010                         # LDO on, no bypass, SCUEN cleared
    assert r.bits(pwr + 0x18, 14, 2) == 3 and r.bits(0x5800042C, 0, 1) == 1   # VOS1 + ODEN = VOS0
    assert r.bits(rcc + 0x28, 0, 2) == 0                             # PLL source HSI (64 MHz, HSIDIV /1)
    assert r.bits(rcc, 3, 2) == 0
    m = r.bits(rcc + 0x28, 4, 6)
    ref = HSI_H7 / m
    rge = r.bits(rcc + 0x2C, 2, 2)
    assert {0: (1e6, 2e6), 1: (2e6, 4e6), 2: (4e6, 8e6), 3: (8e6, 16e6)}[rge][0] <= ref \
        <= {0: 2e6, 1: 4e6, 2: 8e6, 3: 16e6}[rge]
    assert r.bits(rcc + 0x2C, 1, 1) == 0                             # wide VCO: 192-960 MHz (ref >= 2 MHz)
    n, p = r.bits(rcc + 0x30, 0, 9) + 1, r.bits(rcc + 0x30, 9, 7) + 1
    vco = ref * n
    assert 192e6 <= vco <= 960e6 and r.bits(rcc + 0x2C, 16, 1) == 1
    sys_ck = vco / p
    assert sys_ck == TARGETS["stm32h743"].cpu_hz == load_board("stm32h743").clock_hz == 480e6
    assert r.bits(rcc + 0x10, 0, 3) == 3 and r.bits(rcc + 0x10, 3, 3) == 3
    d1 = sys_ck / AHB_DIV[r.bits(rcc + 0x18, 8, 4)]
    hclk = d1 / AHB_DIV[r.bits(rcc + 0x18, 0, 4)]
    apb = [hclk / APB_DIV[r.bits(a, s, 3)] for a, s in ((rcc + 0x18, 4), (rcc + 0x1C, 4), (rcc + 0x1C, 8), (rcc + 0x20, 4))]
    assert d1 == 480e6 and hclk == 240e6 and all(f <= 120e6 for f in apb)
    assert r.lib.snn_uart_hz() == apb[1]                             # USART3: rcc_pclk1 by default
    assert r.bits(acr, 0, 4) == 4 and r.bits(acr, 4, 2) == 2         # RM0433 Table 17, VOS0, 225-240 MHz AXI
    pll_on = r.first_write(rcc, lambda v: v & (1 << 24))
    switch = r.first_write(rcc + 0x10, lambda v: (v & 7) == 3)
    assert r.first_write(0x5800042C) < pll_on < r.first_write(acr) < switch


def test_nrf52840_hfxo(tmp_path):
    r = _run(tmp_path, "nrf52840")
    assert r.first_write(0x40000100) < r.first_write(0x40000000, lambda v: v == 1)   # clear event, then start
    assert r[0x4000040C] == 0x10001 and r.bits(0x4001E540, 0, 1) == 1
    assert TARGETS["nrf52840"].cpu_hz == load_board("nrf52840").clock_hz == 64_000_000


def test_every_target_runs_its_board_profile_clock():
    for name, target in TARGETS.items():
        assert target.cpu_hz == load_board(name).clock_hz, name
