import json
import shutil
import subprocess

import pytest

from firmware_sim.c_export import export_c


def test_header_compiles_and_plan_lists_kernels(fixture_encoder, tmp_path):
    res = export_c(fixture_encoder, tmp_path)
    plan = json.loads((tmp_path / "snn_encoder_plan.json").read_text())
    assert plan["kernels"] and plan["arena"]["peak_bytes"] == res["arena_bytes"]
    conv = [k for k in plan["kernels"] if k["kernel"].startswith("conv")]
    assert conv and "weights" in conv[0]["params"] and "bias" in conv[0]["params"]
    assert any("multiplier" in k["params"] for k in plan["kernels"] if k["kernel"] == "requantize")
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        pytest.skip("no C compiler")
    name = conv[0]["params"]["weights"]["c_name"]
    src = tmp_path / "t.c"
    src.write_text(f'#include "snn_encoder.h"\nint main(void) {{ return (int){name}[0] + SNN_ARENA_BYTES '
                   f'+ SNN_N_SYMBOLS; }}\n')
    subprocess.run([gcc, "-std=c99", "-Wall", "-Werror", "-Wno-unused-const-variable", "-fsyntax-only",
                    f"-I{tmp_path}", str(src)], check=True)
