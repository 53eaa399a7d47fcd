"""The codec's networks: backbones with named split points, the SQ encoder, the soft quantizer,
the BER-aware decoder (with GDN and AF blocks) and the split model that joins them."""
