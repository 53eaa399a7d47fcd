"""The core's one entry (`EdgeCore.offer`) and what listeners get of the core (`Front`): typed
refusals on a future for HTTP, refusals counted under the transport that carried them, a
self-validating `EdgeConfig` whose fields are the CLI's defaults."""
from __future__ import annotations

import ast
import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
from standin import FP_A, standin_registry
from wire_client import KEYS, UNSERVED, data_frame, data_frames, empty_state, open_reply

from codec.wire.frame import ErrorCode, ErrorReply, Reply
from edge.core import Answer, EdgeConfig, EdgeCore, Front, Rejected

ROOT = Path(__file__).resolve().parents[2]
FRONT_API = {"offer", "pause_s", "reply_failed", "refused", "watch_kernel_drops", "transport"}


def _core(**kw) -> EdgeCore:
    return EdgeCore(standin_registry(), EdgeConfig(keys=KEYS, state_path=empty_state(), **kw))


def test_listeners_touch_nothing_of_the_core_but_their_front():
    """edge/listeners.py imports nothing of edge.core and uses only the Front's methods."""
    tree = ast.parse((ROOT / "edge" / "listeners.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [getattr(node, "module", None) or ""] + [a.name for a in node.names]
            assert not any(n.startswith("edge.core") for n in names), ast.dump(node)
        if isinstance(node, ast.Attribute):
            assert node.attr != "core", f"line {node.lineno}: a listener reaches into the core"
            if isinstance(node.value, ast.Attribute) and node.value.attr == "front":
                assert node.attr in FRONT_API, f"line {node.lineno}: front.{node.attr}"
    assert set(dir(Front)) & FRONT_API == FRONT_API


def test_a_serial_refusal_is_counted_under_serial():
    core = _core()
    out: list[bytes] = []
    core.offer(data_frame(1, UNSERVED, device=5), None, out.append, None, "serial")   # device 5: unserved codec
    [error] = [open_reply(f) for f in out]
    assert isinstance(error, ErrorReply) and error.code == ErrorCode.UNKNOWN_CODEC
    [dev] = [d for d in core.devices.top(10, 0.0) if d["device_id"] == 5]
    assert dev["transport"] == "serial" and dev["rejected"] == 1
    assert core.metrics.frame_counts == {"udp": 0, "serial": 1, "http": 0}


def test_a_future_gets_the_answer_or_a_typed_refusal():
    async def main():
        core = _core()
        core.start()
        loop = asyncio.get_running_loop()

        async def ask(data: bytes):
            future = loop.create_future()
            core.offer(data, None, future, None, "http")
            try:
                return await asyncio.wait_for(future, 10)
            except Rejected as rej:
                return rej

        good = data_frame(4, FP_A, device=12)
        answer = await ask(good)
        again = await ask(good)
        garbage = await ask(b"\x00" * 49)
        fragment = await ask(data_frames(2, FP_A, device=12, mtu=30)[0])
        unserved = await ask(data_frame(1, UNSERVED, device=5))
        await core.stop()
        return answer, again, garbage, fragment, unserved

    answer, again, garbage, fragment, unserved = asyncio.run(main())
    assert isinstance(answer, Answer) and answer.label == 4 and answer.class_name == "class4"
    assert answer.device_id == 12 and answer.t_start >= answer.t_recv
    reply = open_reply(answer.frame)      # the same authenticated REPLY a datagram link gets
    assert isinstance(reply, Reply) and reply.label == 4 and reply.counter == answer.counter
    assert isinstance(again, Rejected) and again.reason == "replay" and again.code is None
    assert isinstance(garbage, Rejected) and garbage.request is None and garbage.code is None
    assert isinstance(fragment, Rejected) and fragment.reason == "bad_frame" and "fragment" in fragment.message
    assert isinstance(unserved, Rejected) and unserved.code == ErrorCode.UNKNOWN_CODEC


def test_what_fails_authentication_gets_nothing_back_on_a_link():
    core = _core()
    out: list[bytes] = []
    for data in (b"", b"\xa7" * 31, b"\x00" * 49, data_frame(3, device=7, key=bytes(16))):
        core.offer(data, None, out.append, ("198.51.100.7", 4000), "udp")
    assert out == []
    assert sum(core.metrics.reject_counts.values()) == 4 and core.answered == 0


@pytest.mark.parametrize("field, value", [("max_batch", 0), ("max_queue", -1), ("max_batch", 2.5),
                                          ("deadline_ms", 0), ("max_wait_ms", -1), ("busy_rate", float("nan")),
                                          ("reassembly_timeout_s", 0), ("device_rate", -5), ("ber_decay", 1.0),
                                          ("model_workers", 0), ("max_devices", True)])
def test_edge_config_refuses_bad_values(field, value):
    with pytest.raises(ValueError, match=field):
        EdgeConfig(insecure=True, **{field: value})


def test_edge_config_needs_keys_or_insecure_not_both():
    with pytest.raises(ValueError, match="--keys"):
        EdgeConfig()
    with pytest.raises(ValueError, match="exclude"):
        EdgeConfig(keys=KEYS, insecure=True, state_path="x")
    assert EdgeConfig(insecure=True, device_rate=7).device_burst == 14      # bursts default to 2x


def test_cli_defaults_are_the_dataclass_fields():
    import argparse

    from edge.cli import add_arguments
    from edge.http_guard import HttpLimits
    from edge.server import ServeOptions

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["serve"])
    cfg = EdgeConfig.default
    assert (args.max_batch, args.max_wait_ms, args.queue, args.deadline_ms, args.busy_rate) == (
        cfg("max_batch"), cfg("max_wait_ms"), cfg("max_queue"), cfg("deadline_ms"), cfg("busy_rate"))
    assert (args.reassembly_timeout, args.max_devices, args.source_fail_rate, args.device_rate) == (
        cfg("reassembly_timeout_s"), cfg("max_devices"), cfg("source_fail_rate"), cfg("device_rate"))
    options, limits = ServeOptions(), HttpLimits()
    assert args.http == "%s:%d" % options.http and args.udp == "%s:%d" % options.udp
    assert (args.threads, args.log_level) == (options.threads, options.log_level)
    assert (args.http_idle_timeout, args.http_request_timeout) == (limits.idle_timeout_s, limits.request_timeout_s)


@pytest.mark.parametrize("flag, value", [("--max-batch", "0"), ("--deadline-ms", "-1"), ("--busy-rate", "-2"),
                                         ("--max-wait-ms", "-1"), ("--reassembly-timeout", "0")])
def test_cli_bad_config_is_one_line_and_exit_2(flag, value):
    r = subprocess.run([sys.executable, "-m", "snn", "edge", "serve", "--insecure", "--http", "127.0.0.1:0",
                        "--udp", "none", flag, value], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and flag in r.stderr, r.stderr


def test_a_duplicate_fragment_spends_nothing_of_the_devices_budget():
    """A replayed fragment of a pending inference is dropped before the device's rate budget:
    with a budget of 2 frames, ten replays of fragment 1 still leave room for fragment 2."""
    core = _core(device_rate=0.001, device_burst=2)
    frames = data_frames(3, FP_A, device=23, mtu=30)
    assert len(frames) >= 2
    out: list[bytes] = []
    core.offer(frames[0], None, out.append, ("192.0.2.1", 1), "udp")
    for _ in range(10):
        core.offer(frames[0], None, lambda data: out.append(b"attacker" + data), ("203.0.113.9", 2), "udp")
    core.offer(frames[1], None, out.append, ("192.0.2.1", 1), "udp")
    counts = core.metrics.reject_counts
    assert counts["duplicate"] == 10 and counts["rate_limited"] == 0
    assert core.budgets.last_source(23) == ("192.0.2.1", 1)


def _answered(out: list[bytes]) -> int:
    return sum(isinstance(open_reply(f), Reply) for f in out)


def test_spoofed_failures_from_any_number_of_sources_cannot_lock_a_device_out():
    """Issue 21 items 3, 4, 8 in process: bad-MIC frames claiming device 30 from 1,000 sources are
    checked at most claim_fail_rate (+ burst) times and then dropped unverified; the same from
    the device's own address charge only that pair; the device, on its pair, is answered
    throughout, and its own rate budget is untouched."""
    core = _core(claim_fail_rate=10, device_rate=50, device_burst=50)
    home = ("192.0.2.30", 5000)
    out: list[bytes] = []
    core.offer(data_frame(1, FP_A, device=30), None, out.append, home, "udp")
    for k in range(1000):                       # a guesser with 1,000 addresses
        core.offer(data_frame(2, FP_A, device=30, key=bytes(16)), None, out.append, ("198.51.100.1", k), "udp")
    counts = core.metrics.reject_counts
    assert counts["auth"] <= 25 and counts["unverified"] >= 975
    for _ in range(500):                        # the same from the device's own address
        core.offer(data_frame(3, FP_A, device=30, key=bytes(16)), None, out.append, home, "udp")
    for label in range(5):
        core.offer(data_frame(label, FP_A, device=30), None, out.append, home, "udp")
    assert counts["auth"] <= 525 and counts["rate_limited"] == 0
    assert len(core.batcher) == 6               # every genuine frame was admitted (queued: no loop runs)


def test_the_cpu_spent_on_garbage_is_bounded_as_a_whole():
    """0.1 ms of CPU per second for everything that fails: 2,000 garbage datagrams from 2,000
    sources are mostly dropped unread; a device on its own pair still gets in."""
    import os
    core = _core(fail_cpu=0.0001, source_fail_rate=0)
    out: list[bytes] = []
    home = ("192.0.2.31", 1)
    core.offer(data_frame(1, FP_A, device=31), None, out.append, home, "udp")
    for k in range(2000):
        core.offer(os.urandom(49), None, out.append, ("198.51.100.2", k), "udp")
    counts = core.metrics.reject_counts
    assert counts["unverified"] > 1500 and out == []
    core.offer(data_frame(2, FP_A, device=31), None, out.append, home, "udp")
    assert len(core.batcher) == 2
