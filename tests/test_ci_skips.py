"""tests/conftest.py turns a skip into a failure under CI, and only under CI."""
import os
import shutil
import subprocess
import sys
from pathlib import Path


def _run(tmp_path: Path, ci: str | None) -> subprocess.CompletedProcess:
    shutil.copy(Path(__file__).with_name("conftest.py"), tmp_path / "conftest.py")
    (tmp_path / "test_skipper.py").write_text("import pytest\n\ndef test_it():\n    pytest.skip('no widget')\n")
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci is not None:
        env["CI"] = ci
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir",
                           str(tmp_path), str(tmp_path)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)


def test_skip_fails_under_ci(tmp_path):
    r = _run(tmp_path, "true")
    assert r.returncode == 1 and "skipped under CI" in r.stdout and "no widget" in r.stdout


def test_skip_stays_a_skip_outside_ci(tmp_path):
    r = _run(tmp_path, None)
    assert r.returncode == 0 and "1 skipped" in r.stdout
