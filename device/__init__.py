"""The device client: int8 ONNX encoder, packing, framing and a transport. Never imports torch."""
