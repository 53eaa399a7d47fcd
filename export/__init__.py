"""Device artefacts: the encoder as float and int8 ONNX with its metadata and verification."""
