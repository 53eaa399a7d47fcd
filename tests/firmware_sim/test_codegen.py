"""The generated C encoder, built with the host gcc, against the integer simulator: equal symbols."""
import numpy as np
import pytest

from toolchain import need

SHIPPED = "codec/zoo/fmnist_default.int8.onnx"


def test_c_equals_simulator_on_fixture_encoder(fixture_encoder, fixture_images):
    need("gcc")
    from firmware_sim.host_engine import HostEncoder
    from firmware_sim.lowering import lower

    program = lower(fixture_encoder)
    sim = program.run(fixture_images)
    c = HostEncoder(program).run(fixture_images)
    assert c.shape == sim.shape
    assert np.array_equal(c, sim)


def test_c_equals_simulator_on_real_images_with_shipped_encoder():
    need("gcc")
    from firmware_sim.host_engine import compare_engines
    from firmware_sim.fw_cli import load_images

    try:
        images, _ = load_images("fmnist:test", 60)
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"Fashion-MNIST not available: {exc}")
    res = compare_engines(SHIPPED, images, engine="c")
    assert res["symbol_agreement_vs_sim"] == 1.0
    assert res["symbol_agreement_vs_onnxruntime"] >= 0.999
    assert res["symbol_agreement"] == res["symbol_agreement_vs_onnxruntime"]


def test_generated_model_plans_its_arena_and_refuses_unknown_steps(fixture_encoder):
    from snn.errors import SnnError
    from firmware_sim.codegen import generate
    from firmware_sim.lowering import lower

    program = lower(fixture_encoder)
    model = generate(program)
    assert "void snn_model_run(void)" in model.header
    assert model.arena_bytes == model.plan.peak_bytes > 0
    # buffers live at the same time never overlap in the arena
    bufs = [b for b in model.plan.buffers if b.size]
    for i, a in enumerate(bufs):
        for b in bufs[i + 1:]:
            if not (a.last < b.first or b.last < a.first):
                assert a.offset + a.size <= b.offset or b.offset + b.size <= a.offset, (a, b)
    conv = next(s for s in program.steps if s.kernel == "conv")
    conv.spec = object()  # a step whose kernel is not registered
    with pytest.raises(SnnError, match="no C twin"):
        generate(program)


def test_agree_cli_bad_encoder_is_one_line_exit_2(tmp_path, fixture_images):
    need("gcc")
    import subprocess
    import sys
    import os
    np.save(tmp_path / "imgs.npy", fixture_images)
    out = tmp_path / "a.json"
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    proc = subprocess.run([sys.executable, "-m", "snn", "mcu", "agree", "/nonexistent.onnx", "--engine", "c",
                           "--count", "2", "--json", str(out)], capture_output=True, text=True, env=env)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
