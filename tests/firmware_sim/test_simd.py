"""The DSP intrinsics (firmware/snn_simd.h): the real Armv7E-M instructions under QEMU give the
same results as the portable C the host tests run the SIMD kernels with."""
import subprocess
from pathlib import Path

import pytest

from toolchain import need

from firmware_sim.codegen import FIRMWARE_DIR

HERE = Path(__file__).with_name("simd_check")


def _host_hash(tmp_path: Path) -> str:
    main = tmp_path / "host_main.c"
    main.write_text('#include <stdio.h>\n#include <stdint.h>\nuint64_t snn_simd_check(void);\n'
                    'int main(void) { printf("%016llx\\n", (unsigned long long)snn_simd_check()); return 0; }\n')
    exe = tmp_path / "host"
    subprocess.run([need("gcc"), "-O2", "-std=c99", "-I", str(FIRMWARE_DIR), str(HERE / "simd_check.c"), str(main),
                    "-o", str(exe)], check=True)
    return subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout.strip()


@pytest.mark.parametrize("cpu, machine", [("cortex-m4", "mps2-an386"), ("cortex-m7", "mps2-an500")])
def test_real_dsp_instructions_equal_the_portable_c(tmp_path, cpu, machine):
    gcc = need("arm-none-eabi-gcc")
    qemu = need("qemu-system-arm")
    elf = tmp_path / "simd.elf"
    subprocess.run([gcc, f"-mcpu={cpu}", "-mthumb", "-O2", "-ffreestanding", "-nostdlib", "-nostartfiles",
                    "-T", str(HERE / "link.ld"), "-I", str(FIRMWARE_DIR), str(HERE / "simd_check.c"),
                    str(HERE / "arm_main.c"), "-o", str(elf)], check=True)
    dis = subprocess.run(["arm-none-eabi-objdump", "-d", str(elf)], capture_output=True, text=True).stdout
    assert "smlad" in dis and "smlald" in dis and "sxtb16" in dis      # the instructions, not the C fallback
    arm = subprocess.run([qemu, "-M", machine, "-display", "none", "-monitor", "none", "-serial", "none",
                          "-semihosting-config", "enable=on,target=native", "-kernel", str(elf)],
                         capture_output=True, text=True, timeout=60)
    assert arm.returncode == 0, arm.stderr
    assert arm.stderr.strip() == _host_hash(tmp_path)    # QEMU writes the semihosting console on stderr
