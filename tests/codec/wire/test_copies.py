"""codec/wire/copies.py: the link estimate a device plans its header copies for (§3.3)."""
import math

import numpy as np
import pytest

from codec.wire.copies import BER_GRID, NO_REPORT_BER, LinkEstimate, cheapest_plan, plan_cost


def test_no_outcome_no_estimate_and_the_report_rules():
    e = LinkEstimate()
    assert e.ber() is None and e.planning_ber(None) == NO_REPORT_BER and e.planning_ber(3e-3) == 3e-3
    for _ in range(30):
        e.observe(37, 1, 1, False, False, answered=True)
    assert e.ber() == BER_GRID[0]            # every one answered: the cleanest link on the grid
    assert e.planning_ber(2e-2) == 2e-2


@pytest.mark.parametrize("true_ber, mtu", [(2e-2, 222), (4e-2, 51), (8e-2, 222)])
def test_estimate_finds_the_ber_that_explains_the_outcomes(true_ber, mtu):
    """Transmissions answered with the model's probability at `true_ber`, each framed as the rule
    says at the current estimate: the estimate settles near the truth (the grid has 16 steps a
    decade) and the plans stop changing."""
    rng = np.random.default_rng(int(true_ber * 1e4))
    e = LinkEstimate()
    got = []
    for _ in range(400):
        plan = cheapest_plan(37, mtu, e.planning_ber(1e-3))
        a = plan_cost(37, plan.copies, plan.fragments, true_ber).answered
        e.observe(37, plan.copies, plan.fragments, False, False, answered=bool(rng.random() < a))
        got.append(e.planning_ber(1e-3))
    tail = np.array(got[200:])
    assert np.median(np.abs(np.log10(tail / true_ber))) < 0.35, (np.median(tail), true_ber)


def test_old_outcomes_fade():
    e = LinkEstimate()
    for _ in range(50):
        e.observe(37, 1, 1, False, False, answered=False)
    bad = e.ber()
    for _ in range(400):
        e.observe(37, 1, 1, False, False, answered=True)
    assert bad > 0.05 and e.ber() < 1e-2
    assert math.isclose(BER_GRID[16], 1e-3) and len(BER_GRID) == 57
