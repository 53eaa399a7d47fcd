"""The dashboard's time-series charts (plain SVG over GET /v1/history), drawn by headless Chromium
against a real edge: a screenshot and DOM checks that every chart has data."""
import os
import re
import subprocess
import time

import numpy as np
import pytest
from standin import FP_A
from wire_client import data_frame

CHROMIUM = "/usr/bin/chromium"
CHARTS = ("answers", "latency", "rejects", "ber", "accuracy")


def _chromium(url: str, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           "--virtual-time-budget=4000", *flags, url], capture_output=True, text=True, timeout=90)


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs Debian's chromium at /usr/bin/chromium "
                                                          "(scripts/setup.sh installs it as root)")
def test_charts_have_data_in_the_dom_and_on_the_screenshot(edge, udp, tmp_path):
    for i in range(60):                     # three seconds of traffic: answers, refusals, BER, accuracy
        udp.ask(data_frame(i % 10, FP_A, device=1250 + i % 2, truth=i % 10 if i % 5 else (i + 1) % 10))
        udp.send(b"\x00" * 17)
        time.sleep(0.05)
    time.sleep(1.1)                          # the last second's point is in
    url = edge.http + "/?token=" + edge.token      # once: the page's redirect makes it a cookie its fetches carry
    out = _chromium(url, "--dump-dom")
    dom = out.stdout
    assert 'id="chart-answers"' in dom, out.stderr[-2000:]
    for name in CHARTS:
        m = re.search(rf'<svg id="chart-{name}"[^>]*data-points="(\d+)"', dom)
        assert m and int(m.group(1)) >= 2, f"chart {name} has no data"
    assert re.search(r'<path class="line" d="M[\d.]+,[\d.]+ L', dom)          # a drawn polyline
    assert "device 1250" in dom and "device 1251" in dom and "p99" in dom     # legends name the series
    accuracy = re.search(r'<svg id="chart-accuracy".*?</svg>', dom, re.S).group(0)
    assert 'data-series="device 1250"' in accuracy

    shot = tmp_path / "dashboard.png"
    out = _chromium(url, f"--screenshot={shot}", "--window-size=1280,1500")
    assert shot.is_file() and shot.stat().st_size > 10_000, out.stderr[-2000:]
    from PIL import Image
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    # the first series' colour (#1f77b4) and the second's (#d62728) are drawn on the page
    for rgb in ((0x1F, 0x77, 0xB4), (0xD6, 0x27, 0x28)):
        near = (np.abs(pixels - np.array(rgb)).sum(axis=2) < 60).sum()
        assert near > 200, (rgb, near)
