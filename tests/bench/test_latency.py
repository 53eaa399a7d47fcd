"""`bench.latency`: device + air + edge time per inference, SemanticNN beside a bit-level baseline."""
from bench.latency import run_latency


def test_latency_rows_add_up_and_semanticnn_sends_fewer_bytes():
    out = run_latency(quick=True, links=("lora-sf7", "uart-115200"), baseline="jpeg50-rs127", log=lambda *_: None)
    rows = {(r["method"], r["link"]): r for r in out["rows"]}
    assert set(rows) == {(m, link) for m in ("semanticnn", "jpeg50-rs127") for link in ("lora-sf7", "uart-115200")}
    for r in out["rows"]:
        assert r["device_ms"] > 0 and r["edge_ms"] > 0 and r["air_ms"] > 0
        assert abs(r["total_ms"] - (r["device_ms"] + r["air_ms"] + r["edge_ms"])) < 0.05
    for link in ("lora-sf7", "uart-115200"):
        assert rows[("semanticnn", link)]["bytes_on_air"] * 5 < rows[("jpeg50-rs127", link)]["bytes_on_air"]
    assert out["encoder_int8_ms_1thread"] > 0 and "rs_decode_ms" in out["baseline_parts_ms"]
