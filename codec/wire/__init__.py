"""The wire format: what a device and an edge must agree on, byte for byte (docs/PROTOCOL.md).

Symbol packing with Gray codes (`packing`), the frame (`frame`), COBS byte framing for stream
links (`cobs`) and fragment reassembly (`reassembly`). Depends on numpy and the FEC/crypto
libraries only, and on nothing else of `codec`: `import codec.wire` never loads torch, so a
device installs numpy and onnxruntime and nothing more.
"""
