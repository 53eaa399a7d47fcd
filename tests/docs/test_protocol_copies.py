"""docs/PROTOCOL.md §3.3-§3.4: every vector of the copies rule, the block-loss figures, the link
estimate and the fragment counts that fit are what the reference implementation computes (the C
firmware implements the same rule against these numbers)."""
import re
from pathlib import Path

import pytest

from codec.wire.copies import BER_GRID, LinkEstimate, block_loss, cheapest_plan
from codec.wire.frame import fits

DOC = (Path(__file__).resolve().parents[2] / "docs" / "PROTOCOL.md").read_text()
SECTION = DOC[DOC.index("### 3.3 Copies"):DOC.index("### 3.5 Receiving")]


def _plan_rows():
    rows = re.findall(r"^\| (\d+) \| (\d+) \| (none|[0-9.e-]+) \| (yes|no) \| (yes|no) \| (\d) \| (\d+) \| (\d+) \| "
                      r"([0-9.]+) \| ([0-9.]+) \|$", SECTION, flags=re.M)
    assert len(rows) >= 15
    return rows


@pytest.mark.parametrize("row", _plan_rows(), ids=lambda r: "-".join(r[:5]))
def test_plan_vectors(row):
    p, mtu, ber, truth, long, copies, frags, size, answered, cost = row
    plan = cheapest_plan(int(p), int(mtu), None if ber == "none" else float(ber), truth == "yes", long == "yes")
    assert (plan.copies, plan.fragments, plan.bytes) == (int(copies), int(frags), int(size))
    assert f"{plan.answered:.6f}" == answered and f"{plan.cost:.3f}" == cost


def test_block_loss_figures():
    found = re.findall(r"L\((\d+), (\d)\) at (?:p = )?([0-9.e-]+) is ([0-9.e+-]+\d)", SECTION.replace("\n", " "))
    assert len(found) == 5
    for n, c, ber, value in found:
        assert f"{block_loss(float(ber), int(c), int(n) // 8):.6e}" == value


def test_estimate_vectors():
    text = SECTION.replace("\n", " ")
    assert "give p_own = g_39 (0.027384)" in text and "give g_54 (0.237137)" in text
    e = LinkEstimate()
    for fate in "FAAFAAAFAA":
        e.observe(37, 1, 1, False, False, answered=fate == "A")
    assert BER_GRID.index(e.ber()) == 39 and f"{e.ber():.6f}" == "0.027384"
    e = LinkEstimate()
    for _ in range(3):
        e.observe(37, 1, 2, True, True, answered=False)
    assert BER_GRID.index(e.ber()) == 54 and f"{e.ber():.6f}" == "0.237137"


def test_fragment_counts_that_fit():
    assert "are 2–8, 10 and 13" in SECTION
    assert [k for k in range(1, 17) if fits(37, 1400, 1, k)] == [1, 2, 3, 4, 5, 6, 7, 8, 10, 13]
