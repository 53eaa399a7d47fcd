"""The SemanticNN codec: data sets, symbol packing, the frame format, models and training.

The wire-format modules (`codec.packing`, `codec.frame`, `codec.cobs`, `codec.data`) import
without torch so that a device installs only numpy and onnxruntime.
"""
