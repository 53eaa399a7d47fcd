"""The header block's corrected bits estimate the BER better than v1's 4 pilot bytes (measured
on real flips), which is why v2 has no pilots."""
from bench.ber_estimate import run_ber_bench


def test_header_estimate_beats_pilots_and_is_unbiased():
    result = run_ber_bench(frames=800, bers=(1e-2, 5e-2, 1e-1))
    for row in result["rows"]:
        assert row["header_smoothed_rel_rms"] < row["pilots_smoothed_rel_rms"], row
        assert row["header_frame_rel_rms"] < row["pilots_frame_rel_rms"], row
        assert abs(row["header_mean"] / row["ber"] - 1) < 0.1, row
