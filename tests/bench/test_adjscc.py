"""The ADJSCC-style baseline (`bench.adjscc`): shapes, BER at both ends, safe loading, benchmark rows."""
from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch

from bench import adjscc
from bench.accuracy import run_accuracy
from codec.bundle import load_bundle
from snn.errors import BundleError


@pytest.fixture(scope="module")
def bundle(tiny_bundle):
    return load_bundle(tiny_bundle)


@pytest.fixture(scope="module")
def trained(bundle, tmp_path_factory):
    """A tiny ADJSCC codec for the tiny bundle, trained through the real command path (seconds)."""
    path = tmp_path_factory.mktemp("adjscc") / "adjscc.pt"
    meta = adjscc.train_adjscc(bundle, path, epochs=1, stage1_epochs=1, count=256, val_count=64, eval_count=64,
                               command="test")
    return path, meta


def test_codec_fits_the_bundle_payload(bundle):
    codec = adjscc.adjscc_for(bundle)
    assert codec.n_symbols == bundle.n_symbols
    assert tuple(codec.symbol_shape) == tuple(bundle.symbol_shape)
    bits = math.ceil(math.log2(codec.config["levels"]))
    assert math.ceil(codec.n_symbols * bits / 8) == math.ceil(bundle.n_symbols * bits / 8)
    f = torch.randn(3, *codec.config["split_shape"])
    z = codec.encoder(f, torch.zeros(3))
    assert tuple(z.shape[1:]) == tuple(codec.symbol_shape)
    assert torch.allclose((z * z).mean(dim=(1, 2, 3)), torch.ones(3), atol=1e-2)  # power normalised (eps 1e-6)
    out = codec.decode(torch.randn(3, codec.n_symbols), torch.ones(3, codec.n_symbols), torch.zeros(3))
    assert tuple(out.shape[1:]) == tuple(codec.config["out_shape"])


def test_shipped_shape_strides(bundle):
    """The shipped bundle's map: 32x14x14 features -> 2x7x7 symbols (a stride-2 first conv) -> 64x7x7."""
    codec = adjscc.ADJSCCCodec((32, 14, 14), (64, 7, 7), (2, 7, 7))
    assert codec.n_symbols == 98 and math.ceil(98 * 3 / 8) == 37
    assert codec.encoder(torch.randn(2, 32, 14, 14), torch.zeros(2)).shape == (2, 2, 7, 7)
    with pytest.raises(ValueError, match="divides"):
        adjscc.ADJSCCCodec((32, 14, 14), (64, 7, 7), (2, 5, 5))


def test_the_ber_reaches_the_device_and_the_edge(bundle):
    """Both halves read the channel quality: changing only the BER changes symbols and logits."""
    torch.manual_seed(0)
    codec = adjscc.adjscc_for(bundle).eval()
    codec.quantizer.freeze()
    w = adjscc.ADJSCCBaseline(codec, bundle)
    x = torch.rand(16, 1, 28, 28)
    with torch.no_grad():
        clean, noisy = w.device_half(0.0)(x), w.device_half(0.1)(x)
        assert clean.shape == (16, bundle.n_symbols) and clean.dtype == torch.int64
        assert not torch.equal(clean, noisy)
        edge = w.edge_half()
        erased = torch.zeros(clean.shape, dtype=torch.bool)
        a = edge(clean, erased, torch.zeros(16))
        b = edge(clean, erased, torch.full((16,), 0.1))
    assert a.shape == (16, 10) and not torch.allclose(a, b)


def test_train_save_load_round_trip(bundle, trained):
    path, meta = trained
    assert meta["format"] == adjscc.FORMAT and meta["bundle_fingerprint"] == bundle.fingerprint.hex()
    assert meta["train_images"] == 256 and meta["clean_test_images"] == 64 and meta["command"] == "test"
    assert path.with_suffix(".json").is_file()
    loaded = adjscc.load_adjscc(path, bundle)
    assert loaded.record["clean_test_accuracy"] == meta["clean_test_accuracy"]
    from codec.datasets import load_dataset
    test = load_dataset("fmnist:test").take(64)
    # the recorded figure is that of the stored (float16) weights: re-measured after loading, it is the same
    assert adjscc.clean_accuracy(loaded, test.images, test.labels) == pytest.approx(meta["clean_test_accuracy"])


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_loading_refuses_other_files(bundle, trained, tmp_path, make_tiny_bundle):
    path, _ = trained
    other = load_bundle(make_tiny_bundle(tmp_path / "other.snn", seed=1))
    with pytest.raises(BundleError, match="retrain it"):
        adjscc.load_adjscc(path, other)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(BundleError, match="not an ADJSCC-style codec file"):
        adjscc.load_adjscc(junk, bundle)
    torch.save({"format": "something-else"}, tmp_path / "wrong.pt")
    with pytest.raises(BundleError, match="written by bench.adjscc"):
        adjscc.load_adjscc(tmp_path / "wrong.pt", bundle)

    class Payload:  # a pickle that would run code on a full unpickler
        def __reduce__(self):
            return (print, ("pwned",))

    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps({"format": adjscc.FORMAT, "x": Payload()}))
    with pytest.raises(BundleError, match="not an ADJSCC-style codec file"):
        adjscc.load_adjscc(evil, bundle)
    record = torch.load(path, weights_only=True)
    record["config"]["dec_hidden"] = 7  # weights no longer fit the config
    torch.save(record, tmp_path / "mismatch.pt")
    with pytest.raises(BundleError, match="do not fit"):
        adjscc.load_adjscc(tmp_path / "mismatch.pt", bundle)


def test_benchmark_reports_adjscc_at_every_ber_and_channel(tiny_bundle, trained):
    path, _ = trained
    result = run_accuracy(tiny_bundle, quick=True, count=40, side_count=10, deepcod=None, adjscc=str(path),
                          qualities=(50,), rs_rates=("rs127",), log=lambda *_: None)
    rows = result["rows"]
    adj = {(r["channel"], r["ber"]): r for r in rows if r["method"] == "adjscc"}
    sem = {(r["channel"], r["ber"]): r for r in rows if r["method"] == "semanticnn"}
    assert set(adj) == set(sem) and len(adj) == 12
    for k, r in adj.items():
        assert r["family"] == "learned" and r["count"] == 40 and 0 <= r["accuracy"] <= 1
        assert r["payload_bytes"] == sem[k]["payload_bytes"]  # the same payload in the same v2 frames
    # on a clean link every byte is the same frame's: bytes on air equal SemanticNN's exactly
    assert adj[("iid", 0.0)]["bytes_on_air"] == sem[("iid", 0.0)]["bytes_on_air"]
    assert result["config"]["codecs"]["adjscc"] == str(path)


def test_benchmark_skips_a_mismatched_adjscc_in_quick_runs(tmp_path, make_tiny_bundle, trained):
    path, _ = trained
    other = make_tiny_bundle(tmp_path / "other.snn", seed=2)
    said = []
    result = run_accuracy(other, quick=True, count=20, side_count=5, deepcod=None, adjscc=str(path),
                          qualities=(50,), rs_rates=("rs127",), bers=(0.0,), channels=("iid",), log=said.append)
    assert not any(r["method"] == "adjscc" for r in result["rows"])
    assert any("adjscc row skipped" in s and "retrain it" in s for s in said)


def test_stored_weights_are_half_precision_except_centres():
    state = {"encoder.w": torch.randn(3), "quantizer.start": torch.randn(1), "n": torch.tensor(3)}
    out = adjscc._stored(state)
    assert out["encoder.w"].dtype == torch.float16 and out["quantizer.start"].dtype == torch.float32
    assert out["n"].dtype == torch.int64
    assert np.allclose(out["encoder.w"].float().numpy(), state["encoder.w"].numpy(), atol=1e-2)
