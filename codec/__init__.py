"""The SemanticNN codec, one concept per subroom.

- `codec.wire`: the wire format (Gray packing, frames, COBS, reassembly): numpy and the FEC/crypto
  libraries only, never torch; the reference implementation of docs/PROTOCOL.md.
- `codec.model`: backbones with named split points, encoder, soft quantizer, BER-aware decoder.
- `codec.training`: the two training stages, XAI, the tensor-form channel and the int8 grid.
- `codec.datasets`: Fashion-MNIST, CIFAR and image-folder readers (numpy and Pillow, no torch).
- `codec.bundle`, `codec.evaluate`: checkpoint bundles and accuracy per BER.

`codec` imports nothing of `channel`, `device` or `edge`: evaluation takes the bit-error model as
a parameter.
"""
