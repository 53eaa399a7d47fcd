"""The committed figures (`results/bench.json` and the README's Benchmarks section) describe what
ships: the shipped bundle's codec in every part, the protocol version of docs/PROTOCOL.md, and the
edge engine `snn edge serve` runs by default. When one of these changes, rerun
`snn bench all --out results/` and `python -m bench.report results/bench.json --readme README.md`."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.report import readme_section
from codec.wire.frame import SPEC_VERSION

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "results" / "bench.json"


@pytest.fixture(scope="module")
def results() -> dict:
    return json.loads(RESULTS.read_text())


@pytest.fixture(scope="module")
def bundle():
    from codec.bundle import load_bundle
    return load_bundle()


@pytest.fixture(scope="module")
def shipped(bundle) -> str:
    return bundle.fingerprint_hex   # recomputed from the weights, not read from the manifest


def test_every_part_of_the_results_names_the_shipped_codec(results, shipped):
    assert results["accuracy"]["config"]["bundle_fingerprint"] == shipped, "accuracy: rerun snn bench all"
    assert results["latency"]["bundle_fingerprint"] == shipped, "latency: rerun snn bench all"
    assert "skipped" not in results["edge"], results["edge"].get("skipped")
    assert results["edge"]["codec"].split()[0] == shipped, "edge: rerun snn bench all"
    assert results["accuracy"]["config"]["codecs"]["semanticnn"] == "shipped default bundle"
    assert "warning" not in results, results.get("warning")


def test_the_results_are_of_the_shipped_protocol_and_edge_engine(results, bundle):
    from bench.latency import frame_sizes
    from channel.links import get_link
    from edge.server import ServeOptions

    assert results["protocol"] == SPEC_VERSION == results["latency"]["protocol"]
    assert results["edge"]["engine"] == results["latency"]["edge_engine"] == "onnx"
    assert results["latency"]["edge_threads"] == ServeOptions.__dataclass_fields__["threads"].default
    sem = [r for r in results["latency"]["rows"] if r["method"] == "semanticnn"]
    assert sem
    for r in sem:   # bytes on air of today's frames, not of an older wire format
        assert r["bytes_on_air"] == sum(frame_sizes("semanticnn", bundle.payload_bytes, get_link(r["link"]).mtu))


def test_the_readme_benchmarks_section_is_the_one_written_from_the_results(results):
    readme = (ROOT / "README.md").read_text()
    assert readme_section(results) in readme, (
        "README.md's Benchmarks section is not the one results/bench.json gives: run "
        "python -m bench.report results/bench.json --readme README.md")
