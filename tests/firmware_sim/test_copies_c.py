"""The C copies rule (firmware/copies.c) against the reference (codec.wire.copies): the spec's
vectors, every plan over a sweep of payloads, MTUs and BERs, the fixed-copies fallback, the
control frames' copies, and the device's link estimate over random fates and reports (host gcc)."""
import ctypes
import math
import random
import re
import subprocess
from pathlib import Path

import pytest

from toolchain import need

from firmware_sim.codegen import FIRMWARE_DIR


class Plan(ctypes.Structure):
    _fields_ = [("copies", ctypes.c_uint), ("fragments", ctypes.c_uint), ("bytes", ctypes.c_uint32),
                ("answered", ctypes.c_double), ("cost", ctypes.c_double)]


class Estimate(ctypes.Structure):
    _fields_ = [("loglik", ctypes.c_double * 57), ("outcomes", ctypes.c_uint32), ("have_report", ctypes.c_int),
                ("report", ctypes.c_double)]


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    from firmware_sim.copies_tables import HEADER, copies_tables_header

    gcc = need("gcc")
    d = tmp_path_factory.mktemp("copies")
    (d / HEADER).write_text(copies_tables_header())
    out = d / "copies.so"
    subprocess.run([gcc, "-O2", "-std=c99", "-ffp-contract=off", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC",
                    f"-I{d}", f"-I{FIRMWARE_DIR}", str(FIRMWARE_DIR / "copies.c"), "-o", str(out)], check=True)
    c = ctypes.CDLL(str(out))
    c.snn_block_loss.restype = ctypes.c_double
    c.snn_block_loss.argtypes = [ctypes.c_double, ctypes.c_uint, ctypes.c_uint]
    c.snn_log.restype = c.snn_ber_from_code.restype = ctypes.c_double
    c.snn_log.argtypes = [ctypes.c_double]
    c.snn_plan_cost.restype = Plan
    c.snn_plan_cost.argtypes = [ctypes.c_uint, ctypes.c_uint, ctypes.c_uint, ctypes.c_double, ctypes.c_int,
                                ctypes.c_int]
    c.snn_cheapest_plan.argtypes = [ctypes.c_uint, ctypes.c_uint, ctypes.c_double, ctypes.c_int, ctypes.c_int,
                                    ctypes.POINTER(Plan)]
    c.snn_fixed_plan.argtypes = [ctypes.c_uint, ctypes.c_uint, ctypes.c_uint, ctypes.c_int, ctypes.c_int,
                                 ctypes.POINTER(Plan)]
    c.snn_estimate_planning_ber.restype = ctypes.c_double
    return c


def _close(a: float, b: float) -> bool:
    """Equal to 1e-12, or to a few ulps of 1 (A = 1 - L^K cancels where L is near 1)."""
    return abs(a - b) <= 1e-14 + 1e-12 * max(abs(a), abs(b))


def test_log_and_block_loss_equal_the_reference(lib):
    from codec.wire.copies import block_loss

    rng = random.Random(1)
    for x in [1.0, 0.5, 1e-300, 2.0 ** -1000, 0.9999999999] + [rng.random() for _ in range(2000)]:
        assert abs(lib.snn_log(x) - math.log(x)) <= 2 * math.ulp(math.log(x)) + 1e-300, x
    for _ in range(3000):
        ber, copies, block = 10 ** rng.uniform(-7, 0), rng.choice([1, 3, 5]), rng.choice([12, 13, 14, 15])
        want, got = block_loss(ber, copies, block), lib.snn_block_loss(ber, copies, block)
        # 1 - (a sum near 1): both sides carry a few ulps of 1 in absolute error, as the spec allows
        assert abs(got - want) <= 1e-14 + 1e-12 * want, (ber, copies, block)
    for code in range(256):
        from codec.wire.frame import ber_from_code
        assert lib.snn_ber_from_code(code) == ber_from_code(code)


def _c_plan(lib, fn, *args):
    p = Plan()
    return p if fn(*args, ctypes.byref(p)) == 0 else None


def _spec_section() -> str:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "PROTOCOL.md").read_text()
    return doc[doc.index("### 3.3 Copies"):doc.index("### 3.5 Receiving")]


def test_the_vectors_of_the_spec(lib):
    """docs/PROTOCOL.md 3.3 read as a stranger reads it: every row of the plan table, the
    block-loss figures and the fragment counts that fit, from the C."""
    section = _spec_section()
    rows = re.findall(r"^\| (\d+) \| (\d+) \| (none|[0-9.e-]+) \| (yes|no) \| (yes|no) \| (\d) \| (\d+) \| (\d+) \| "
                      r"([0-9.]+) \| ([0-9.]+) \|$", section, flags=re.M)
    assert len(rows) >= 15
    for payload, mtu, ber, truth, long_counter, copies, frags, size, answered, cost in rows:
        got = _c_plan(lib, lib.snn_cheapest_plan, int(payload), int(mtu), 1e-2 if ber == "none" else float(ber),
                      truth == "yes", long_counter == "yes")
        assert (got.copies, got.fragments, got.bytes) == (int(copies), int(frags), int(size)), (payload, mtu, ber)
        assert f"{got.answered:.6f}" == answered and f"{got.cost:.3f}" == cost, (payload, mtu, ber)
    found = re.findall(r"L\((\d+), (\d)\) at (?:p = )?([0-9.e-]+) is ([0-9.e+-]+\d)", section.replace("\n", " "))
    assert len(found) == 5
    for n, c, ber, value in found:
        assert f"{lib.snn_block_loss(float(ber), int(c), int(n) // 8):.6e}" == value
    assert "are 2–8, 10 and 13" in section
    assert [k for k in range(1, 17) if lib.snn_fits(37, 1400, 1, k, 0, 0)] == [1, 2, 3, 4, 5, 6, 7, 8, 10, 13]


def test_every_choice_equals_the_reference(lib):
    """The spec's table (PROTOCOL.md 3.3) and a sweep: the same (copies, fragments, bytes), the same
    answered and cost to 1e-12."""
    from codec.wire.copies import cheapest_plan, plan_cost

    rng = random.Random(2)
    cases = [(37, 51, None, False, False), (37, 51, 0.06, False, False), (147, 51, 0.08, False, False),
             (37, 222, 0.15, True, False), (37, 1400, 0.2, False, False)]
    cases += [(rng.choice([5, 37, 49, 147, 200]), rng.randrange(16, 1500), rng.choice([None, 10 ** rng.uniform(-6, -0.3)]),
               rng.random() < 0.5, rng.random() < 0.5) for _ in range(1500)]
    for payload, mtu, ber, truth, long_counter in cases:
        try:
            want = cheapest_plan(payload, mtu, ber, truth, long_counter)
        except ValueError:
            want = None
        got = _c_plan(lib, lib.snn_cheapest_plan, payload, mtu, 1e-2 if ber is None else ber, truth, long_counter)
        if want is None:
            assert got is None
            continue
        assert (got.copies, got.fragments, got.bytes) == (want.copies, want.fragments, want.bytes), (payload, mtu, ber)
        assert _close(got.answered, want.answered)
        assert got.cost == (got.bytes / got.answered if got.answered > 0 else math.inf)
        c = lib.snn_plan_cost(payload, want.copies, want.fragments, 1e-2 if ber is None else ber, truth, long_counter)
        ref = plan_cost(payload, want.copies, want.fragments, 1e-2 if ber is None else ber, truth, long_counter)
        assert _close(c.answered, ref.answered)


def test_fixed_copies_and_control_copies(lib):
    from codec.wire.frame import fitting_copies

    for payload in (5, 37, 147):
        for mtu in range(16, 260, 3):
            for wanted in (1, 3, 5):
                for truth in (False, True):
                    try:
                        want = fitting_copies(payload, mtu, wanted, truth, False)
                    except ValueError:
                        want = None
                    got = _c_plan(lib, lib.snn_fixed_plan, payload, mtu, wanted, truth, False)
                    assert (None if got is None else (got.copies, got.fragments)) == want, (payload, mtu, wanted)
    for data_copies, mtu, want in ((5, 75, 5), (5, 74, 3), (3, 44, 1), (5, 15, 1), (1, 1400, 1)):
        assert lib.snn_control_copies(data_copies, mtu) == want


def test_link_estimate_follows_the_reference(lib):
    """Random fates and reports: after each event the C planning BER is the reference device's
    (LinkEstimate, its report smoothed 0.8/0.2), and so is the plan it chooses."""
    from codec.wire.copies import LinkEstimate, cheapest_plan
    from codec.wire.frame import ber_from_code

    rng = random.Random(3)
    for mtu in (51, 222):
        ref, est = LinkEstimate(), Estimate()
        lib.snn_estimate_init(ctypes.byref(est))
        report = None
        for step in range(300):
            long_counter = rng.random() < 0.3
            plan = cheapest_plan(37, mtu, ref.planning_ber(report), False, long_counter)
            got = _c_plan(lib, lib.snn_cheapest_plan, 37, mtu, ctypes.c_double(lib.snn_estimate_planning_ber(
                ctypes.byref(est))), False, long_counter)
            assert (got.copies, got.fragments) == (plan.copies, plan.fragments), (mtu, step)
            answered = rng.random() < (0.3 if step % 100 < 40 else 0.95)
            ref.observe(37, plan.copies, plan.fragments, False, long_counter, answered=answered)
            lib.snn_estimate_observe(ctypes.byref(est), 37, plan.copies, plan.fragments, False, long_counter,
                                     answered)
            if answered and rng.random() < 0.8:
                code = rng.randrange(0, 256) if rng.random() < 0.1 else rng.randrange(100, 190)
                report = ber_from_code(code) if report is None else 0.8 * report + 0.2 * ber_from_code(code)
                lib.snn_estimate_report(ctypes.byref(est), code)
            assert lib.snn_estimate_planning_ber(ctypes.byref(est)) == ref.planning_ber(report), (mtu, step)


def test_estimate_vectors_of_the_spec(lib):
    """PROTOCOL.md 3.3: ten fates with (1 copy, 1 fragment) give g_39; three unanswered with
    (1 copy, 2 fragments, long counter, truth) give g_54."""
    from codec.wire.copies import BER_GRID

    text = _spec_section().replace("\n", " ")
    assert "give p_own = g_39 (0.027384)" in text and "give g_54 (0.237137)" in text
    est = Estimate()
    lib.snn_estimate_init(ctypes.byref(est))
    for answered in (0, 1, 1, 0, 1, 1, 1, 0, 1, 1):
        lib.snn_estimate_observe(ctypes.byref(est), 37, 1, 1, 0, 0, answered)
    assert lib.snn_estimate_planning_ber(ctypes.byref(est)) == BER_GRID[39]
    lib.snn_estimate_init(ctypes.byref(est))
    for _ in range(3):
        lib.snn_estimate_observe(ctypes.byref(est), 37, 1, 2, 1, 1, 0)
    assert lib.snn_estimate_planning_ber(ctypes.byref(est)) == BER_GRID[54]
