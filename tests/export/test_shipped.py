"""The int8 encoder committed beside the shipped bundle belongs to it."""
from codec.bundle import load_bundle
from export.shipped import SHIPPED_INT8, default_int8_encoder, onnx_fingerprint


def test_shipped_int8_encoder_matches_the_shipped_bundle():
    assert SHIPPED_INT8.is_file(), "re-export with: snn export -o DIR; copy DIR/encoder.int8.onnx there"
    assert onnx_fingerprint(SHIPPED_INT8) == load_bundle().fingerprint_hex
    assert default_int8_encoder() == SHIPPED_INT8
