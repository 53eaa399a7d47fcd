import numpy as np
import pytest

from firmware_sim import kernels as K
from firmware_sim.lowering import agreement, lower
from snn.errors import SnnError


def test_integer_path_agrees_with_onnxruntime(fixture_encoder, fixture_images):
    res = agreement(str(fixture_encoder), fixture_images)
    assert res["agreement"] >= 0.999, res
    assert res["max_index_distance"] <= 1


def test_program_has_no_float_arrays(fixture_encoder, fixture_images):
    program = lower(fixture_encoder)
    values = {program.input_name: fixture_images[:2].astype(np.int64)}
    for step in program.steps:
        values[step.output] = step.run(values)
        assert values[step.output].dtype.kind in "iu", (step.name, values[step.output].dtype)
        for p in step.params.values():
            if isinstance(p, np.ndarray):
                assert p.dtype.kind in "iu", step.name
    assert program.macs > 0


def test_unsupported_op_is_refused_by_name(tmp_path):
    onnx = pytest.importorskip("onnx")
    h = onnx.helper
    node = h.make_node("Sin", ["x"], ["y"], name="the_sin")
    graph = h.make_graph([node], "g", [h.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 1, 4, 4])],
                         [h.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 1, 4, 4])])
    path = tmp_path / "sin.onnx"
    onnx.save(h.make_model(graph, opset_imports=[h.make_opsetid("", 17)]), str(path))
    with pytest.raises(SnnError, match="unsupported operator 'Sin'.*the_sin"):
        lower(path)


def test_single_rounding_requantisation_is_exact():
    rng = np.random.default_rng(0)
    x = rng.integers(-(1 << 24), 1 << 24, size=5000)
    for real in (0.0123456, 3.7e-4, 1.5, 77.0):
        y = K.rescale(x, real, 25)
        exact = np.clip(x * real, -(2 ** 31) + 1, 2 ** 31 - 1)
        assert np.abs(y - exact).max() <= 0.5 + 1e-6


def test_isqrt_and_round_div():
    n = np.array([0, 1, 2, 3, 4, 99, 100, 2 ** 62 - 1], dtype=np.int64)
    r = K.isqrt(n)
    assert np.all(r * r <= n) and np.all((r + 1) * (r + 1) > n)
    assert list(K.round_div(np.array([7, -7, 5]), np.array([2, 2, 3]))) == [4, -4, 2]
