"""`snn mcu build`: a self-contained firmware project for a board, cross-compiled with arm-none-eabi-gcc.

The project folder holds everything needed to rebuild without Python (``make``): the generated
encoder (`codegen`), the hand-written C of ``firmware/`` (framing, packing, COBS, UART and
SysTick per board family, startup code), a linker script with the board's flash and RAM, and a
Makefile whose flags are the ones used here. It is created mode 0700 because it holds the
device's key once protocol v2 binds one (``snn_config.h``).

Two images come out of one source tree:

- ``firmware.elf`` for the board itself (its memory map, its UART, its clock tree at the board's
  maximum documented clock, `firmware/clock.c`);
- ``firmware-qemu.elf`` for QEMU's nearest machine (`TARGETS`): the same kernels with the SysTick
  clock QEMU emulates, linked with the *board's* flash and RAM limits. For the STM32F411 the
  machine is ``netduinoplus2`` (STM32F405): same Cortex-M4F, same USART2 registers at the same
  address, same flash/SRAM origins, so only the clock differs: QEMU models no clock tree (its RCC
  is unimplemented), so that image skips `clock.c` (``SNN_NO_CLOCK_TREE``) and counts QEMU's
  SysTick clock; the clock tree is checked on the host instead. QEMU models no nRF52840
  UART and no STM32F7/H7 USART: those boards' QEMU images run on the MPS2 image of their core
  (``mps2-an386``, ``mps2-an500``) with its CMSDK UART and memory origins.

Flash is ``.isr_vector + .text + .rodata + .data`` and RAM ``.data + .bss + .stack`` (the tensor
arena is in ``.bss``), read from the ELF's section headers with ``arm-none-eabi-size -A``.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from snn.errors import SnnError
from firmware_sim.boards import load_board
from firmware_sim.codegen import FIRMWARE_DIR, generate
from firmware_sim.copies_tables import HEADER as HEADER_TABLES
from firmware_sim.copies_tables import copies_tables_header
from firmware_sim.lowering import lower

TOOLCHAIN_HINT = "apt-get install gcc-arm-none-eabi (scripts/setup.sh does it as root)"
COMMON_SOURCES = ["main.c", "board.c", "clock.c", "link_uart.c", "link_sx1276.c", "sx1276.c", "counter_store.c",
                  "state_journal.c", "journal.c", "resync.c", "copies.c", "startup.c", "pack.c", "cobs.c", "aes.c", "cmac.c", "rt.c"]
PROTOCOL_SOURCES = {2: ["proto_v2.c"]}   # the framing swap is this line (v1 C left with v1, withdrawn)
HEADERS = ["board.h", "clock.h", "link.h", "sx1276.h", "counter_store.h", "state.h", "journal.h", "resync.h", "copies.h", "pack.h", "cobs.h", "aes.h", "cmac.h", "proto.h", "snn_fixed.h", "snn_simd.h"]
MODEL_SOURCE = "snn_model.c"
STACK_BYTES = 4096
BAUD = 115200


@dataclass(frozen=True)
class Target:
    """How to build for a board: core flags, memory map, UART family, clock at reset, QEMU machine."""

    cpu_flags: tuple[str, ...]
    family: tuple[str, ...]          # -D defines selecting board.c's UART
    flash_origin: int
    ram_origin: int
    ram_length: int | None           # None: the board profile's sram_bytes
    cpu_hz: int                      # the core clock firmware/clock.c configures (the board's maximum)
    qemu_machine: str | None
    qemu_hz: int = 0                 # the SysTick clock QEMU's machine emulates
    qemu_serial_index: int = 0       # which -serial the firmware's UART is
    qemu_family: tuple[str, ...] | None = None   # the QEMU image's UART, when QEMU lacks the board's
    qemu_flash_origin: int | None = None         # the QEMU machine's memory map, when it differs
    qemu_ram_origin: int | None = None
    dsp: bool = True                 # the core has the DSP extension: the SMLAD kernels (else plain C)
    journal: tuple[int, int, int] | None = None   # flash sectors of the counter journal (addr0, addr1, bytes):
                                     # a flash driver exists (board.c); else the harness keeps the counter

    @property
    def qemu_own_map(self) -> bool:
        return self.qemu_flash_origin is not None or self.qemu_ram_origin is not None


MPS2 = dict(qemu_hz=25_000_000, qemu_serial_index=0, qemu_family=("SNN_BOARD_CMSDK",))


M4F = ("-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16")
TARGETS: dict[str, Target] = {
    "stm32f411": Target(M4F, ("SNN_BOARD_STM32F4",), 0x08000000, 0x20000000, None, 100_000_000,
                        "netduinoplus2", 168_000_000, 1, journal=(0x08040000, 0x08060000, 128 * 1024)),
    # QEMU models neither the nRF52840's UART nor the STM32F7/H7 USART: their QEMU images run the
    # same kernels within the same flash/RAM limits on the MPS2 FPGA image of their core
    # (Cortex-M4: mps2-an386, Cortex-M7: mps2-an500), whose CMSDK UART board.c also drives
    "nrf52840": Target(M4F, ("SNN_BOARD_NRF52",), 0x00000000, 0x20000000, None, 64_000_000, "mps2-an386", **MPS2),
    "stm32f746": Target(("-mcpu=cortex-m7", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv5-sp-d16"),
                        ("SNN_BOARD_STM32V2",), 0x08000000, 0x20000000, None, 216_000_000, "mps2-an500",
                        qemu_flash_origin=0x0, **MPS2),
    # the H743's largest contiguous RAM is the 512 KB AXI SRAM (the profile's 1 MB spans banks)
    "stm32h743": Target(("-mcpu=cortex-m7", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv5-d16"),
                        ("SNN_BOARD_STM32V2", "SNN_BOARD_H7"), 0x08000000, 0x24000000, 512 * 1024, 480_000_000,
                        "mps2-an500", qemu_flash_origin=0x0, qemu_ram_origin=0x20000000, **MPS2),
}
# -fno-delete-null-pointer-checks: address 0 is memory on a Cortex-M (the vector table; the nRF52840's
# flash), and GCC 12.2 otherwise miscompiles a loop storing at the arena's offset 0: its induction
# variables rebase the store on a literal 0, the pure-const pass takes that for a NULL dereference
# (undefined, so "the loop never stores") and the call is deleted (found on a host build, where the
# generated Div of a test encoder silently vanished; see tests/firmware_sim/test_codegen.py)
# -ffp-contract=off: the copies rule's doubles rounded as the reference rounds them (no fused multiply-add)
CFLAGS = ("-O2", "-std=c99", "-ffreestanding", "-fno-builtin", "-fno-delete-null-pointer-checks", "-ffp-contract=off",
          "-ffunction-sections", "-fdata-sections",
          "-Wall", "-Wextra", "-Wno-unused-function")
# libgcc (GCC Runtime Library Exception): the soft-float double arithmetic of the copies rule on
# cores without a double-precision FPU; nothing else of it is linked (--gc-sections)
LDFLAGS = ("-nostdlib", "-nostartfiles", "-Wl,--gc-sections", "-lgcc")


def toolchain(tool: str = "arm-none-eabi-gcc") -> str:
    path = shutil.which(tool)
    if path is None:
        raise SnnError(f"{tool} not found: {TOOLCHAIN_HINT}")
    return path


def target_for(board_name: str) -> Target:
    key = Path(board_name).stem.lower()
    if key not in TARGETS:
        raise SnnError(f"no firmware target for board {board_name!r}; targets: {', '.join(sorted(TARGETS))}")
    return TARGETS[key]


@dataclass(frozen=True)
class LoraRadio:
    """The raw-LoRa link of a board image (firmware/link_sx1276.c over sx1276.c, never run on a chip):
    the SX1276's modulation. The QEMU image keeps the UART link (QEMU has no SX1276)."""

    sf: int = 7
    bw_hz: int = 125_000
    cr: int = 1                       # 4/5
    freq_hz: int = 868_100_000
    power_dbm: int = 13
    sync_word: int = 0x12

    def check(self, board: str) -> None:
        if board not in RADIO_BOARDS:
            raise SnnError(f"--radio sx1276 has an SPI driver for {', '.join(RADIO_BOARDS)} only, not {board}")
        if not 7 <= self.sf <= 12 or self.bw_hz not in (125_000, 250_000, 500_000) or not 1 <= self.cr <= 4:
            raise SnnError("LoRa settings: SF 7..12, bandwidth 125/250/500 kHz, coding rate 4/5..4/8")
        if not 862_000_000 <= self.freq_hz <= 1_020_000_000 or not 0 <= self.power_dbm <= 14:
            raise SnnError("LoRa settings: carrier 862-1020 MHz (the SX1276's band 1, RFO_HF pin), power 0..14 dBm")

    @property
    def mtu(self) -> int:
        from channel.links import get_link
        return get_link(f"lora-sf{self.sf}-bw{self.bw_hz // 1000}").mtu

    def config_lines(self) -> list[str]:
        return [f"#define SNN_LORA_FREQ_HZ {self.freq_hz}u", f"#define SNN_LORA_SF {self.sf}u",
                f"#define SNN_LORA_BW_CODE {({125_000: 7, 250_000: 8, 500_000: 9})[self.bw_hz]}u",
                f"#define SNN_LORA_CR {self.cr}u", f"#define SNN_LORA_POWER_DBM {self.power_dbm}",
                f"#define SNN_LORA_SYNC_WORD 0x{self.sync_word:02X}u"]


RADIO_BOARDS = ("stm32f411",)


def _defines(target: Target, hz: int, layer_hook: bool, qemu: bool = False, radio: bool = False) -> list[str]:
    family = target.qemu_family if qemu and target.qemu_family else target.family
    d = [f"-D{f}" for f in family] + [f"-DSNN_CPU_HZ={hz}u", f"-DSNN_BAUD={BAUD}u", f"-DSNN_SIMD={int(target.dsp)}"]
    if qemu:    # QEMU models no clock tree (its RCC reads 0): the image keeps the machine's clock
        d.append("-DSNN_NO_CLOCK_TREE")
    elif radio:
        d.append("-DSNN_LINK_SX1276")
    if qemu or target.journal is None:   # the counter record lives in the host (QEMU's flash is read-only)
        d.append("-DSNN_STATE_HARNESS")
    else:
        a0, a1, size = target.journal
        d += [f"-DSNN_JOURNAL_SECTOR0=0x{a0:08X}u", f"-DSNN_JOURNAL_SECTOR1=0x{a1:08X}u",
              f"-DSNN_JOURNAL_SECTOR_BYTES={size}u"]
    return d + (["-DSNN_LAYER_HOOK"] if layer_hook else [])


def sources(protocol: int) -> list[str]:
    return COMMON_SOURCES + PROTOCOL_SOURCES[protocol] + [MODEL_SOURCE]


def reference_protocol() -> int:
    """The protocol version of this checkout's reference implementation (codec.wire.frame)."""
    from codec.wire.frame import VERSION
    return int(VERSION)


def device_key(key_file: Path | None, device_id: int, fingerprint: str) -> tuple[bytes, str]:
    """(16-byte key, where it came from) for this device: its keys-file entry (codec.wire.keys,
    docs/PROTOCOL.md), or the all-zero key of the edge's --insecure mode when no file is given."""
    if key_file is None:
        return bytes(16), "insecure (all-zero key: pair with snn edge serve --insecure)"
    from codec.wire.keys import device_key as provisioned
    entry = provisioned(key_file, device_id)
    if entry.fingerprint is not None and entry.fingerprint.hex() != fingerprint.lower():
        raise SnnError(f"{key_file}: device {device_id} is provisioned for codec {entry.fingerprint.hex()}, "
                       f"the encoder is {fingerprint}")
    return entry.key, f"{Path(key_file).name}, device {device_id}"


def _makefile(target: Target, protocol: int, radio: bool = False) -> str:
    return f"""# Generated by `snn mcu build`: rebuild with `make` (needs only arm-none-eabi-gcc).
CC = arm-none-eabi-gcc
SIZE = arm-none-eabi-size
CPU = {' '.join(target.cpu_flags)}
CFLAGS = $(CPU) {' '.join(CFLAGS)} -I.
LDFLAGS = $(CPU) {' '.join(LDFLAGS)} -T link.ld
SRCS = {' '.join(sources(protocol))}

all: firmware.elf{' firmware-qemu.elf' if target.qemu_machine else ''}

firmware.elf: $(SRCS) link.ld *.h
\t$(CC) $(CFLAGS) {' '.join(_defines(target, target.cpu_hz, True, radio=radio))} $(SRCS) $(LDFLAGS) -o $@
\t$(SIZE) -A $@
""" + (f"""
firmware-qemu.elf: $(SRCS) {_qemu_ld(target)} *.h
\t$(CC) $(CFLAGS) {' '.join(_defines(target, target.qemu_hz, True, qemu=True))} $(SRCS) \\
\t    $(CPU) {' '.join(LDFLAGS)} -T {_qemu_ld(target)} -o $@
""" if target.qemu_machine else "") + """
firmware.bin: firmware.elf
\tarm-none-eabi-objcopy -O binary $< $@

clean:
\trm -f *.elf *.bin
.PHONY: all clean
"""


UART_NOTES = {
    "SNN_BOARD_STM32F4": "USART2 on PA2 (TX) / PA3 (RX): the ST-LINK virtual COM port of a Nucleo-F411RE",
    "SNN_BOARD_STM32V2": "USART1 on PA9/PB7 (F746G-DISCO VCP) or USART3 on PD8/PD9 (Nucleo-H743ZI VCP)",
    "SNN_BOARD_NRF52": "UART0 on P0.06 (TX) / P0.08 (RX): the nRF52840-DK's interface MCU",
}


def _project_readme(board, target: Target, protocol: int, key_source: str) -> str:
    uart = UART_NOTES.get(target.family[0], "see board.c")
    qemu = (f"- `firmware-qemu.elf` is the same firmware for QEMU's `{target.qemu_machine}` "
            f"(`snn mcu qemu --board {board.name} --firmware .`)." if target.qemu_machine else "")
    return f"""# SemanticNN device firmware for {board.name}

Generated by `snn mcu build`. **This folder holds the device key (`snn_config.h`): keep it mode 0700
and do not commit it.** Key: {key_source}. Protocol v{protocol} (docs/PROTOCOL.md).

- `make` rebuilds `firmware.elf` with arm-none-eabi-gcc alone (freestanding: no newlib, no libgcc);
  `make firmware.bin` makes a raw image to flash at 0x{target.flash_origin:08X}
  (e.g. `st-flash write firmware.bin 0x{target.flash_origin:08X}` or `openocd ... program firmware.elf`).
- UART: {uart}, {BAUD} baud 8N1. Core clock {target.cpu_hz / 1e6:.0f} MHz (`clock.c` sets up the PLL, flash wait
  states and bus prescalers at boot; `clock.h` has the figures).
  Messages are COBS-framed with a 0x00 delimiter; see `main.c` for the harness messages (image in,
  status out) and `proto.h` for the protocol frames.
- `snn_model.c` is the int8 encoder as integer C (generated; equal to the Python simulator on every
  symbol), `snn_fixed.h` its fixed-point helpers.
{qemu}
"""


def section_sizes(elf: Path) -> dict[str, int]:
    """Section name -> bytes, from ``arm-none-eabi-size -A`` (SysV format)."""
    proc = subprocess.run([toolchain("arm-none-eabi-size"), "-A", str(elf)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SnnError(f"cannot read {elf}: {proc.stderr.strip()}")
    sizes = {}
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].startswith(".") and parts[1].isdigit():
            sizes[parts[0]] = int(parts[1])
    return sizes


def image_sizes(elf: Path) -> dict:
    s = section_sizes(elf)
    flash = s.get(".isr_vector", 0) + s.get(".text", 0) + s.get(".rodata", 0) + s.get(".data", 0)
    ram = s.get(".data", 0) + s.get(".bss", 0) + s.get(".stack", 0)
    return {"flash_bytes": flash, "ram_bytes": ram, "sections": s}


def code_flash(board, target: Target) -> int:
    """Flash the image may use: the board's, less the counter journal's sectors at its end."""
    return target.journal[0] - target.flash_origin if target.journal else board.flash_bytes


def _qemu_ld(target: Target) -> str:
    return "link-qemu.ld" if target.qemu_own_map else "link.ld"


def _compile(out: Path, target: Target, hz: int, elf_name: str, protocol: int, qemu: bool = False,
             radio: bool = False) -> None:
    ld = _qemu_ld(target) if qemu else "link.ld"
    cmd = [toolchain(), *target.cpu_flags, *CFLAGS, "-I.", *_defines(target, hz, True, qemu, radio), *sources(protocol),
           *target.cpu_flags, *LDFLAGS, "-T", ld, "-o", elf_name]
    proc = subprocess.run(cmd, cwd=out, capture_output=True, text=True)
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.splitlines() if "overflowed" in ln or "error" in ln]
        raise SnnError(f"arm-none-eabi-gcc failed for {elf_name}: {(lines or proc.stderr.splitlines() or ['?'])[0][:300]}")


def write_project(encoder, board_name: str, out_dir: Path, key_file: Path | None = None,
                  device_id: int = 1, mtu: int = 255, protocol: int | None = None,
                  copies: int | str = "auto", radio: LoraRadio | None = None) -> dict:
    """Generate the project folder (mode 0700); returns what was written. With `radio` the board
    image sends its frames on an SX1276 at that radio's MTU."""
    protocol = reference_protocol() if protocol is None else int(protocol)
    if protocol not in PROTOCOL_SOURCES:
        raise SnnError(f"protocol version {protocol} has no C implementation (have {sorted(PROTOCOL_SOURCES)})")
    if not 16 <= mtu <= 1500:
        raise SnnError(f"--mtu {mtu}: a frame of 16 to 1500 bytes")
    if copies != "auto" and copies not in (1, 3, 5):
        raise SnnError("--header-copies must be auto, 1, 3 or 5")
    board = load_board(board_name)
    target = target_for(board.name)
    if radio is not None:
        radio.check(board.name)
        mtu = min(mtu, radio.mtu)
    if not 0 <= device_id <= 0xFFFF:
        raise SnnError(f"--device-id {device_id} outside 0..65535")
    encoder = Path(encoder)
    if not encoder.is_file():
        raise SnnError(f"{encoder}: no such encoder file")
    program = lower(encoder)
    model = generate(program, frame_bytes=1 + mtu)   # the stream tag + one frame, in the arena
    _check_fits(program, model, mtu)
    fingerprint = str(program.metadata.get("fingerprint", ""))
    key, key_source = device_key(key_file, device_id, fingerprint)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise SnnError(f"{out} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    os.chmod(out, 0o700)   # it holds the device key
    model.write(out)
    for name in sources(protocol)[:-1] + HEADERS:
        shutil.copyfile(FIRMWARE_DIR / name, out / name)
    ram_len = min(board.sram_bytes, target.ram_length or board.sram_bytes)
    template = (FIRMWARE_DIR / "link.ld.in").read_text()
    maps = {"link.ld": (board.name, target.flash_origin, target.ram_origin)}
    if target.qemu_machine and target.qemu_own_map:   # same lengths (the board's), the machine's origins
        maps["link-qemu.ld"] = (f"{board.name} on QEMU {target.qemu_machine}",
                                target.flash_origin if target.qemu_flash_origin is None else target.qemu_flash_origin,
                                target.ram_origin if target.qemu_ram_origin is None else target.qemu_ram_origin)
    for name, (title, flash_origin, ram_origin) in maps.items():
        ld = template
        for k, v in {"@BOARD@": title, "@FLASH_ORIGIN@": f"0x{flash_origin:08X}",
                     "@FLASH_LENGTH@": str(code_flash(board, target)), "@RAM_ORIGIN@": f"0x{ram_origin:08X}",
                     "@RAM_LENGTH@": str(ram_len), "@STACK_BYTES@": str(STACK_BYTES)}.items():
            ld = ld.replace(k, v)
        (out / name).write_text(ld)
    config = [f"/* Generated by `snn mcu build` for {board.name}, device {device_id}. This folder is mode 0700. */",
              "#ifndef SNN_CONFIG_H", "#define SNN_CONFIG_H", f"#define SNN_DEVICE_ID {device_id}u",
              f"#define SNN_MTU {mtu}u",
              f"#define SNN_PROTOCOL {protocol}u", f"#define SNN_COPIES {0 if copies == 'auto' else copies}u   /* 0: the copies rule */",
              f"/* key: {key_source} */",
              "#define SNN_KEY_BYTES {" + ", ".join(f"0x{b:02x}" for b in key) + "}",
              *(radio.config_lines() if radio else []), "#endif", ""]
    (out / HEADER_TABLES).write_text(copies_tables_header())
    cfg = out / "snn_config.h"
    cfg.write_text("\n".join(config))
    os.chmod(cfg, 0o600)
    (out / "Makefile").write_text(_makefile(target, protocol, radio is not None))
    (out / "README.md").write_text(_project_readme(board, target, protocol, key_source))
    (out / "firmware.json").write_text(json.dumps({
        "board": board.name, "encoder": str(encoder.resolve()), "device_id": device_id,
        "qemu_machine": target.qemu_machine, "qemu_serial_index": target.qemu_serial_index,
        "cpu_hz": target.cpu_hz, "qemu_hz": target.qemu_hz, "n_symbols": model.n_symbols,
        "input_bytes": model.input_bytes, "arena_bytes": model.arena_bytes, "layers": model.layers,
        "fingerprint": fingerprint, "protocol": protocol, "copies": copies, "key": key_source, "mtu": mtu,
        "link": "sx1276" if radio else "uart", "radio": radio.__dict__ if radio else None,
        "key_file": str(Path(key_file).resolve()) if key_file else None}, indent=1))
    return {"board": board, "target": target, "model": model, "out": out, "protocol": protocol, "key": key_source,
            "radio": radio, "mtu": mtu, "copies": copies}


def _check_fits(program, model, mtu: int) -> None:
    """The payload must fit the MTU with one header copy in at most 16 fragments (3.4)."""
    from codec.wire.frame import fitting_copies

    levels = int(program.metadata.get("levels", 0) or 0)
    payload = -(-model.n_symbols * max(1, (max(levels, 2) - 1).bit_length()) // 8)
    try:
        fitting_copies(payload, mtu, 1, truth=True, long_counter=True)
    except ValueError as exc:
        raise SnnError(f"--mtu {mtu}: {exc}") from None


def build_firmware(encoder, board_name: str, out_dir, key_file: Path | None = None, device_id: int = 1,
                   protocol: int | None = None, radio: LoraRadio | None = None, mtu: int = 255,
                   copies: int | str = "auto") -> dict:
    """Write the project, cross-compile both images, and measure the board image against the board."""
    toolchain()
    toolchain("arm-none-eabi-size")
    proj = write_project(encoder, board_name, Path(out_dir), key_file=key_file, device_id=device_id,
                         protocol=protocol, radio=radio, mtu=mtu, copies=copies)
    out, board, target = proj["out"], proj["board"], proj["target"]
    _compile(out, target, target.cpu_hz, "firmware.elf", proj["protocol"], radio=radio is not None)
    if target.qemu_machine:
        _compile(out, target, target.qemu_hz, "firmware-qemu.elf", proj["protocol"], qemu=True)
    sizes = image_sizes(out / "firmware.elf")
    ram_limit = min(board.sram_bytes, target.ram_length or board.sram_bytes)
    flash_limit = code_flash(board, target)
    fits = sizes["flash_bytes"] <= flash_limit and sizes["ram_bytes"] <= ram_limit
    return {"board": board.name, "elf": str((out / "firmware.elf").resolve()),
            "qemu_elf": str((out / "firmware-qemu.elf").resolve()) if target.qemu_machine else None,
            "qemu_machine": target.qemu_machine, "flash_bytes": sizes["flash_bytes"], "ram_bytes": sizes["ram_bytes"],
            "arena_bytes": proj["model"].arena_bytes, "stack_bytes": STACK_BYTES,
            "flash_limit_bytes": flash_limit, "ram_limit_bytes": ram_limit, "fits": bool(fits),
            "counter_store": ("flash journal, sectors at 0x%08X and 0x%08X" % target.journal[:2]) if target.journal
            else "the host over the UART (no flash driver for this board)",
            "sections": sizes["sections"], "project": str(out.resolve()), "protocol": proj["protocol"],
            "key": proj["key"], "cpu_hz": target.cpu_hz, "qemu_hz": target.qemu_hz,
            "link": "sx1276 (never run on a chip)" if radio else "uart", "mtu": proj["mtu"], "copies": proj["copies"]}


def format_build(res: dict) -> str:
    return (f"{res['board']}: flash {res['flash_bytes']} B of {res['flash_limit_bytes']} "
            f"({100 * res['flash_bytes'] / res['flash_limit_bytes']:.1f} %), RAM {res['ram_bytes']} B of "
            f"{res['ram_limit_bytes']} ({100 * res['ram_bytes'] / res['ram_limit_bytes']:.1f} %; arena "
            f"{res['arena_bytes']} B, stack {res['stack_bytes']} B) -> {'fits' if res['fits'] else 'DOES NOT FIT'}\n"
            f"  core clock {res['cpu_hz'] / 1e6:.0f} MHz, link {res['link']}, protocol v{res['protocol']}, key {res['key']}\n"
            f"  {res['elf']}" + (f"\n  {res['qemu_elf']} (QEMU {res['qemu_machine']})" if res.get("qemu_elf") else ""))


def elf_report(encoder, board_name: str) -> dict:
    """Flash and RAM of the real firmware image for `snn mcu report` (built in a temporary folder),
    or why there is none: the estimate of `report.py` then stands alone."""
    import tempfile

    if shutil.which("arm-none-eabi-gcc") is None:
        return {"built": False, "note": f"no firmware built: {TOOLCHAIN_HINT}"}
    with tempfile.TemporaryDirectory(prefix="snn-elf-") as tmp:
        res = build_firmware(encoder, board_name, Path(tmp) / "fw")
    keep = ("flash_bytes", "ram_bytes", "fits", "flash_limit_bytes", "ram_limit_bytes", "arena_bytes", "stack_bytes")
    return {"built": True, **{k: res[k] for k in keep},
            "note": "measured from the ELF: flash .isr_vector+.text+.rodata+.data, RAM .data+.bss+.stack"}


def format_elf(e: dict) -> str:
    if not e.get("built"):
        return f"firmware   {e['note']}"
    return (f"firmware   ELF flash {e['flash_bytes']} B of {e['flash_limit_bytes']} B, RAM {e['ram_bytes']} B of "
            f"{e['ram_limit_bytes']} B (arena {e['arena_bytes']} B + stack {e['stack_bytes']} B + data)  "
            f"{'fits' if e['fits'] else 'DOES NOT FIT'} (arm-none-eabi-gcc -O2, snn mcu build)")
