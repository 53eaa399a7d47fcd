"""Test-only stand-in codecs for the edge tests (never shipped in edge/).

The stand-in edge half answers label = (symbol 0 + symbol 1 + offset) mod n_classes, so a test can check that the
edge unpacks the payload right and routes each frame to the codec its fingerprint names. Run as a
script it serves stand-in codecs with the real server (uvicorn, UDP, serial) in this process:

    python tests/edge/standin.py --http 127.0.0.1:0 --udp 127.0.0.1:0 [--queue N] ...
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from codec.wire.packing import pack_symbols  # noqa: E402
from edge.codecs import CodecRegistry, ServedCodec  # noqa: E402

FP_A = bytes.fromhex("5e5e0001")
FP_B = bytes.fromhex("5e5e0002")
CLASSES = [f"class{i}" for i in range(10)]


class StandInEdgeHalf(nn.Module):
    """logits peak at (symbol 0 + symbol 1 + offset) mod n_classes; `delay_s` simulates a slow model."""

    def __init__(self, n_classes: int = 10, offset: int = 0, delay_s: float = 0.0):
        super().__init__()
        self.n_classes, self.offset, self.delay_s = n_classes, offset, delay_s
        self.scale = nn.Parameter(torch.tensor(5.0))

    def forward(self, symbols, erased, ber):
        if self.delay_s:
            import time
            time.sleep(self.delay_s)
        label = (symbols[:, 0].long() + symbols[:, 1].long() + self.offset) % self.n_classes
        logits = torch.nn.functional.one_hot(label, self.n_classes).float() * self.scale
        return logits + 0.0 * ber.view(-1, 1) + 0.0 * erased[:, :1].float()


def standin_codec(fp: bytes = FP_A, offset: int = 0, levels: int = 8, n_symbols: int = 98,
                  delay_s: float = 0.0) -> ServedCodec:
    return ServedCodec(fingerprint=fp, name=f"standin-{fp.hex()}", levels=levels, n_symbols=n_symbols,
                       classes=CLASSES, module=StandInEdgeHalf(10, offset, delay_s).eval(),
                       source="test stand-in")


def standin_registry(delay_s: float = 0.0) -> CodecRegistry:
    return CodecRegistry([standin_codec(FP_A, 0, delay_s=delay_s), standin_codec(FP_B, 3, delay_s=delay_s)])


def payload_for(label: int, levels: int = 8, n_symbols: int = 98, seed: int = 0) -> tuple[bytes, int]:
    """A payload the stand-in (offset 0) labels `label` (0..14)."""
    rng = np.random.default_rng(seed)
    sym = rng.integers(0, levels, n_symbols)
    sym[0] = min(label, levels - 1)
    sym[1] = label - sym[0]
    packed = pack_symbols(sym, levels)
    return packed.tobytes(), n_symbols * 3


def main() -> int:
    from edge.core import EdgeConfig
    from edge.cli import gateway_options
    from edge.server import ServeOptions, parse_hostport, serve

    p = argparse.ArgumentParser()
    p.add_argument("--http", default="127.0.0.1:0")
    p.add_argument("--udp", default="127.0.0.1:0")
    p.add_argument("--serial", action="append")
    p.add_argument("--queue", type=int, default=2048)
    p.add_argument("--max-batch", type=int, default=64)
    p.add_argument("--max-devices", type=int, default=1024)
    p.add_argument("--delay", type=float, default=0.0)
    p.add_argument("--reassembly-timeout", type=float, default=0.5)
    p.add_argument("--keys")
    p.add_argument("--insecure", action="store_true")
    p.add_argument("--source-fail-rate", type=float, default=200.0)
    p.add_argument("--http-max-connections", type=int, default=None)
    p.add_argument("--http-idle-timeout", type=float, default=5.0)
    p.add_argument("--http-request-timeout", type=float, default=5.0)
    p.add_argument("--nofile", type=int, default=None,
                   help="lower this process's descriptor limit to N once loaded (EMFILE tests)")
    p.add_argument("--deadline-ms", type=float, default=50.0)
    p.add_argument("--udp-queue", type=int, default=None)
    p.add_argument("--busy-rate", type=float, default=1000.0)
    p.add_argument("--gateway", default=None)
    p.add_argument("--gateway-allow", action="append", default=None)
    p.add_argument("--gateway-dedup-ms", type=float, default=200.0)
    p.add_argument("--rx1-delay", type=float, default=1.0)
    p.add_argument("--gateway-tx-power", type=int, default=14)
    p.add_argument("--history-seconds", type=int, default=600)
    p.add_argument("--operator-token", help="operator token file (default: a private temporary one)")
    p.add_argument("--no-operator-token", action="store_true")
    p.add_argument("--reset-replay-state", action="store_true")
    args = p.parse_args()
    from codec.wire.keys import load_keys
    config = EdgeConfig(max_batch=args.max_batch, max_queue=args.queue, max_devices=args.max_devices,
                        reassembly_timeout_s=args.reassembly_timeout,
                        keys=load_keys(args.keys) if args.keys else None, insecure=args.insecure,
                        state_path=f"{args.keys}.edge-state" if args.keys else None,
                        reset_replay_state=args.reset_replay_state,
                        source_fail_rate=args.source_fail_rate, source_fail_burst=2 * args.source_fail_rate,
                        deadline_ms=args.deadline_ms, busy_rate=args.busy_rate)
    from edge.http_guard import HttpLimits, default_max_connections
    from edge.operator_auth import load_or_create, open_access
    operator = (open_access() if args.no_operator_token
                else load_or_create(args.operator_token) if args.operator_token else None)
    options = ServeOptions(http=parse_hostport(args.http, "--http"), operator=operator,
                           udp=parse_hostport(args.udp, "--udp"), serial=args.serial, udp_queue=args.udp_queue,
                           http_limits=HttpLimits(args.http_max_connections or default_max_connections(),
                                                  args.http_idle_timeout, args.http_request_timeout),
                           gateway=gateway_options(args), history_s=args.history_seconds)
    if args.nofile:
        import resource
        resource.setrlimit(resource.RLIMIT_NOFILE, (args.nofile, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))

    def ready(addresses):
        print("READY " + json.dumps(addresses), flush=True)

    return serve(standin_registry(args.delay), config, options, ready)


if __name__ == "__main__":
    sys.exit(main())
