"""Device half / edge half: shapes, dtypes, erasure mask, crop, BER conditioning, ONNX export."""
import warnings

import numpy as np
import pytest
import torch

from codec.model.backbones import build_backbone
from codec.model.semantic_codec import DeviceHalf, EdgeHalf, Normalise, SemanticCodec


def _parts(crop=1.0, stride=1, ber_conditioning=True):
    torch.manual_seed(0)
    bb = build_backbone("resnet8", in_channels=1, n_classes=10, width=0.5).eval()
    codec = SemanticCodec(bb.split_shape((1, 28, 28)), levels=8, channels=2, enc_hidden=8, dec_hidden=8,
                          enc_stride=stride, crop=crop, ber_conditioning=ber_conditioning).eval()
    return bb, codec


def test_halves_shapes_and_types():
    bb, codec = _parts()
    dev = DeviceHalf(Normalise([0.3], [0.3]), bb, codec).eval()
    edge = EdgeHalf(bb, codec).eval()
    sym = dev(torch.rand(3, 1, 28, 28))
    assert sym.dtype == torch.int64 and sym.shape == (3, codec.n_symbols) == (3, 98)
    assert int(sym.min()) >= 0 and int(sym.max()) < 8
    with torch.inference_mode():
        logits = edge(sym, torch.zeros_like(sym, dtype=torch.bool), torch.tensor([0.0, 1e-2, 1e-1]))
    assert logits.shape == (3, 10) and logits.dtype == torch.float32


def test_erased_symbols_do_not_matter_and_ber_does():
    bb, codec = _parts()
    edge = EdgeHalf(bb, codec).eval()
    sym = torch.randint(0, 8, (2, 98))
    erased = torch.zeros(2, 98, dtype=torch.bool)
    erased[:, :40] = True
    other = sym.clone()
    other[:, :40] = torch.randint(0, 8, (2, 40))
    ber = torch.tensor([1e-3, 1e-3])
    with torch.no_grad():
        assert torch.allclose(edge(sym, erased, ber), edge(other, erased, ber))
        assert not torch.allclose(edge(sym, erased, ber), edge(sym, erased, torch.tensor([1e-1, 1e-1])))


def test_no_ber_conditioning_ignores_ber():
    bb, codec = _parts(ber_conditioning=False)
    edge = EdgeHalf(bb, codec).eval()
    sym = torch.randint(0, 8, (2, 98))
    er = torch.zeros(2, 98, dtype=torch.bool)
    with torch.no_grad():
        assert torch.allclose(edge(sym, er, torch.tensor([0.0, 0.0])), edge(sym, er, torch.tensor([0.1, 0.1])))


@pytest.mark.parametrize("crop,stride,n", [(0.6, 1, 2 * 4 * 4), (1.0, 2, 2 * 4 * 4)])
def test_crop_and_stride_change_symbol_count(crop, stride, n):
    bb, codec = _parts(crop=crop, stride=stride)
    dev = DeviceHalf(Normalise([0.3], [0.3]), bb, codec).eval()
    edge = EdgeHalf(bb, codec).eval()
    sym = dev(torch.rand(2, 1, 28, 28))
    assert sym.shape == (2, n) == (2, codec.n_symbols)
    with torch.no_grad():
        out = edge(sym, torch.zeros_like(sym, dtype=torch.bool), torch.zeros(2))
    assert out.shape == (2, 10)


def test_device_half_exports_to_onnx(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    bb, codec = _parts()
    codec.quantizer.freeze()
    dev = DeviceHalf(Normalise([0.3], [0.3]), bb, codec).eval()
    path = tmp_path / "enc.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(dev, torch.zeros(1, 1, 28, 28), str(path), opset_version=17, dynamo=False)
    sess = ort.InferenceSession(str(path))
    x = np.random.default_rng(0).random((1, 1, 28, 28), dtype=np.float32)
    got = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    assert (got == dev(torch.from_numpy(x)).numpy()).mean() > 0.98


def test_stride1_transposed_conv_fast_path_is_the_same_function():
    from codec.model.decoder import DecoderStage

    torch.manual_seed(0)
    stage = DecoderStage(4, 6, stride=1)
    x = torch.randn(3, 4, 7, 7)
    assert torch.allclose(stage.upsample(x), stage.tconv(x), atol=1e-5)


def test_decoder_can_stand_in_for_skipped_stages():
    """A codec from layer2 features (32x14x14, encoder stride 2 -> 2x7x7 symbols) whose decoder
    outputs layer3's features (64x7x7): the edge half runs only pool + classifier after it."""
    torch.manual_seed(0)
    bb = build_backbone("resnet8", in_channels=1, n_classes=10, width=0.5, split="layer2", resume="layer3").eval()
    codec = SemanticCodec(bb.split_shape((1, 28, 28)), enc_hidden=8, dec_hidden=8, enc_stride=2,
                          out_shape=bb.resume_shape((1, 28, 28))).eval()
    assert codec.n_symbols == 98 and codec.out_shape == (32, 7, 7) and codec.config["out_shape"] == [32, 7, 7]
    assert SemanticCodec.from_config(codec.config).out_shape == codec.out_shape
    sym = DeviceHalf(Normalise([0.3], [0.3]), bb, codec).eval()(torch.rand(2, 1, 28, 28))
    with torch.inference_mode():
        logits = EdgeHalf(bb, codec).eval()(sym, torch.zeros_like(sym, dtype=torch.bool), torch.tensor([0.0, 1e-2]))
    assert logits.shape == (2, 10)
    plain = SemanticCodec((16, 7, 7), enc_hidden=8, dec_hidden=8)
    assert "out_shape" not in plain.config, "older bundles keep their config and fingerprint"
    with pytest.raises(ValueError, match="cannot map"):
        SemanticCodec((32, 14, 14), enc_hidden=8, dec_hidden=8, enc_stride=2, out_shape=(64, 5, 5))
