"""`snn mcu build`: a real arm-none-eabi-gcc build of the shipped encoder, measured from the ELF."""
import json
import os
import stat
import subprocess
import sys

import pytest

from toolchain import need

from export.shipped import onnx_fingerprint

SHIPPED = "codec/zoo/fmnist_default.int8.onnx"
SHIPPED_FP = onnx_fingerprint(SHIPPED)     # the codec the committed encoder belongs to


def _snn(*args, env=None):
    return subprocess.run([sys.executable, "-m", "snn", *args], capture_output=True, text=True, timeout=300,
                          env=env or dict(os.environ))


def test_stm32f411_build_fits_and_project_rebuilds_with_make(tmp_path):
    need("arm-none-eabi-gcc")
    out, js = tmp_path / "fw", tmp_path / "b.json"
    r = _snn("mcu", "build", "--board", "stm32f411", SHIPPED, "-o", str(out), "--device-id", "7", "--json", str(js))
    assert r.returncode == 0, r.stderr
    res = json.loads(js.read_text())
    assert res["fits"] is True
    assert 0 < res["flash_bytes"] <= 512 * 1024 and 0 < res["ram_bytes"] <= 128 * 1024
    assert res["ram_bytes"] >= res["arena_bytes"] + res["stack_bytes"]
    assert os.path.isfile(res["elf"]) and os.path.isfile(res["qemu_elf"])
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o700          # it holds the device key
    assert stat.S_IMODE(os.stat(out / "snn_config.h").st_mode) == 0o600
    assert "SNN_DEVICE_ID 7u" in (out / "snn_config.h").read_text()
    # the image is freestanding: no newlib, no libgcc symbol pulled in
    nm = subprocess.run(["arm-none-eabi-nm", res["elf"]], capture_output=True, text=True).stdout
    assert "__aeabi_uldivmod" not in nm and "snn_model_run" in nm
    # the folder is self-contained: make rebuilds the same image
    import shutil
    if shutil.which("make"):
        os.remove(out / "firmware.elf")
        subprocess.run(["make", "-s", "firmware.elf"], cwd=out, check=True, capture_output=True)
        from firmware_sim.build import image_sizes
        assert image_sizes(out / "firmware.elf")["flash_bytes"] == res["flash_bytes"]


@pytest.mark.parametrize("board", ["stm32h743"])   # nrf52840 and stm32f746 are built by test_qemu
def test_other_boards_build_and_fit(tmp_path, board):
    need("arm-none-eabi-gcc")
    from firmware_sim.build import build_firmware
    res = build_firmware(SHIPPED, board, tmp_path / board)
    assert res["fits"] and res["flash_bytes"] > 0 and os.path.isfile(res["qemu_elf"])


def test_bad_input_is_one_line_exit_2(tmp_path):
    for args in (["--board", "nosuchboard", SHIPPED], ["--board", "stm32f411", str(tmp_path / "missing.onnx")],
                 ["--board", "stm32f411", SHIPPED, "--device-id", "70000"]):
        r = _snn("mcu", "build", *args, "-o", str(tmp_path / "x"))
        assert r.returncode == 2, r.stderr
        assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


def test_missing_toolchain_says_how_to_install(tmp_path):
    env = dict(os.environ, PATH=str(tmp_path))      # no arm-none-eabi-gcc on this PATH
    r = _snn("mcu", "build", "--board", "stm32f411", SHIPPED, "-o", str(tmp_path / "fw"), env=env)
    assert r.returncode == 2
    assert "apt-get install gcc-arm-none-eabi" in r.stderr and r.stderr.count("\n") == 1


def test_report_shows_measured_elf_sizes():
    need("arm-none-eabi-gcc")
    from firmware_sim.build import elf_report, format_elf
    fw = elf_report(SHIPPED, "stm32f411")     # what `snn mcu report` adds under "firmware"
    assert fw["built"] and fw["fits"] and 0 < fw["flash_bytes"] <= 512 * 1024 and fw["ram_bytes"] <= 128 * 1024
    assert "ELF flash" in format_elf(fw)


def test_key_file_entry_goes_into_a_private_config(tmp_path):
    need("arm-none-eabi-gcc")
    from firmware_sim.build import build_firmware
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps({"format": "snn-keys", "version": 1, "devices": [
        {"id": 7, "key": "000102030405060708090a0b0c0d0e0f", "fingerprint": SHIPPED_FP},
        {"id": 8, "key": "ff" * 16, "fingerprint": "12345678"}]}))
    keys.chmod(0o600)    # a keys file others may read is refused (docs/PROTOCOL.md §4.4)
    res = build_firmware(SHIPPED, "stm32f411", tmp_path / "fw", key_file=keys, device_id=7, protocol=2)
    cfg = (tmp_path / "fw" / "snn_config.h").read_text()
    assert "0x00, 0x01, 0x02" in cfg and res["protocol"] == 2 and res["fits"]
    assert stat.S_IMODE(os.stat(tmp_path / "fw" / "snn_config.h").st_mode) == 0o600
    meta = json.loads((tmp_path / "fw" / "firmware.json").read_text())
    assert "0001020304" not in json.dumps(meta)          # the key stays in the private header only
    from firmware_sim.build import device_key
    from snn.errors import SnnError
    for dev, msg in ((8, "provisioned for codec 12345678"), (9, "no key for device 9")):
        with pytest.raises(SnnError, match=msg):     # the CLI prints it as one line, exit 2
            device_key(keys, dev, SHIPPED_FP)
