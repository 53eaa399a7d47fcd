"""The live dashboard page, rendered by headless Chromium against a real server."""
import os
import re
import subprocess

import pytest
from standin import FP_A
from wire_client import data_frame

CHROMIUM = "/usr/bin/chromium"


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs Debian's chromium at /usr/bin/chromium "
                                                          "(scripts/setup.sh installs it as root)")
def test_dashboard_renders_live_numbers(edge, udp):
    for i in range(30):
        udp.ask(data_frame(i % 10, FP_A, device=700 + i % 3, truth=i % 10))
    polls0 = edge.get("/v1/stats").json()["snapshots"]
    # the token once in the address: the page's redirect makes it an HttpOnly cookie its polls carry
    out = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                          "--virtual-time-budget=3500", "--dump-dom", edge.http + "/?token=" + edge.token],
                         capture_output=True, text=True, timeout=60)
    dom = out.stdout
    assert "SemanticNN edge" in dom, out.stderr[-2000:]

    def field(name):
        m = re.search(rf'id="{name}"[^>]*>([^<]*)<', dom)
        assert m, f"{name} missing from the rendered page"
        return m.group(1)

    assert int(field("frames-total")) >= 30 and int(field("answered-total")) >= 30
    assert float(field("p50")) > 0 and float(field("p99")) >= float(field("p50"))
    assert field("accuracy") == "100.0 %"
    assert FP_A.hex() in field("codecs")
    assert "live, updated" in field("status")
    assert re.search(r"<td>70[012]</td><td>udp</td>", dom)  # per-device rows with BER
    # the page refreshed by itself: several polls of /v1/stats during the 3.5 s it ran
    assert edge.get("/v1/stats").json()["snapshots"] - polls0 >= 3
