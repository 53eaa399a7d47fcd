"""The generated C encoder, built with the host gcc, against the integer simulator: equal symbols."""
import numpy as np
import pytest

from toolchain import need

SHIPPED = "codec/zoo/fmnist_default.int8.onnx"


@pytest.mark.parametrize("simd", [True, False], ids=["dsp-path", "plain-c"])
def test_c_equals_simulator_on_fixture_encoder(fixture_encoder, fixture_images, simd):
    need("gcc")
    from firmware_sim.host_engine import HostEncoder
    from firmware_sim.lowering import lower

    program = lower(fixture_encoder)
    sim = program.run(fixture_images)
    c = HostEncoder(program, simd=simd).run(fixture_images)
    assert c.shape == sim.shape
    assert np.array_equal(c, sim)


def test_dsp_path_runs_every_eligible_conv_and_plans_its_columns(fixture_encoder):
    from firmware_sim.codegen import generate
    from firmware_sim.lowering import lower

    program = lower(fixture_encoder)
    model = generate(program)
    convs = [s for s in program.steps if s.kernel in ("conv", "conv_1x1") and s.spec.w.dtype == np.int8]
    assert len(convs) >= 4    # int16 weights (the GDN's asymmetric 1x1) stay on the plain path
    assert model.source.count("_im2col(col0a, p);") == len(convs)   # each int8 conv blocked, in its layer
    scratch = [b for b in model.plan.buffers if b.kind == "scratch"]
    assert len(scratch) == len(convs) and all(b.first == b.last for b in scratch)
    assert "#if SNN_SIMD" in model.source and "snn_dot2x2(" in model.source


def test_wide_accumulators_take_smlald_and_stay_exact(fixture_encoder, fixture_images):
    """A conv whose bound passes 2^31 accumulates in 64 bits (SMLALD) on the DSP path: forced here
    on every conv of the fixture (its true sums are small, so the result must not change)."""
    need("gcc")
    import dataclasses

    from firmware_sim.host_engine import HostEncoder
    from firmware_sim.lowering import lower

    program = lower(fixture_encoder)
    sim = program.run(fixture_images)
    for step in program.steps:
        if step.kernel in ("conv", "conv_1x1"):
            step.spec = dataclasses.replace(step.spec, acc_bits=40)
    enc = HostEncoder(program, simd=True)
    assert "snn_dot2x2_wide(" in enc.model.source
    assert np.array_equal(enc.run(fixture_images), sim)
    assert np.array_equal(HostEncoder(program, simd=False).run(fixture_images), sim)


def test_odd_channel_and_position_counts(tmp_path):
    """7 output channels on 15 x 15: the last channel pair and the last position pair of the 2 x 2
    blocking are repeats that must be dropped."""
    need("gcc")
    pytest.importorskip("torch")
    from fixture_model import build_fixture
    from firmware_sim.host_engine import HostEncoder
    from firmware_sim.lowering import lower

    program = lower(build_fixture(tmp_path / "odd.int8.onnx", seed=2, hidden=7, stem=5, image=15))
    images = np.random.default_rng(4).integers(0, 256, size=(24, 15, 15, 1), dtype=np.uint8)
    sim = program.run(images)
    for simd in (True, False):
        assert np.array_equal(HostEncoder(program, simd=simd).run(images), sim), simd


def test_c_equals_simulator_on_real_images_with_shipped_encoder():
    need("gcc")
    from firmware_sim.host_engine import compare_engines
    from firmware_sim.fw_cli import load_images

    try:
        images, _ = load_images("fmnist:test", 60)
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"Fashion-MNIST not available: {exc}")
    res = compare_engines(SHIPPED, images, engine="c")
    assert res["symbol_agreement_vs_sim"] == 1.0 and res["symbol_agreement_vs_sim_plain"] == 1.0
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
