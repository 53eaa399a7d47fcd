from firmware_sim.planner import Buffer, plan_buffers, plan_program


def test_chain_peak_is_largest_adjacent_pair():
    # a -> b -> c -> d: each buffer lives from its writer to its reader
    bufs = [Buffer("a", 100, 0, 1), Buffer("b", 400, 1, 2), Buffer("c", 200, 2, 3), Buffer("d", 40, 3, 4)]
    plan = plan_buffers(bufs)
    assert plan.peak_bytes == 600  # b + c live together
    for x in bufs:
        for y in bufs:
            if x is not y and not (x.last < y.first or y.last < x.first):
                assert x.offset + x.size <= y.offset or y.offset + y.size <= x.offset


def test_residual_keeps_skip_alive():
    bufs = [Buffer("in", 64, 0, 3), Buffer("h1", 64, 1, 2), Buffer("h2", 64, 2, 3), Buffer("out", 64, 3, 4)]
    assert plan_buffers(bufs).peak_bytes == 192


def test_program_plan_includes_input_scratch_and_frame(fixture_encoder):
    from firmware_sim.lowering import lower
    plan = plan_program(lower(fixture_encoder), 256, 100)
    kinds = {b.kind for b in plan.buffers}
    assert {"input", "activation", "scratch", "frame", "output"} <= kinds
    assert plan.peak_bytes >= max(b.offset + b.size for b in plan.buffers)
