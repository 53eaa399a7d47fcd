"""The edge server: listeners, micro-batching, the BER-aware decoder and the task head."""
