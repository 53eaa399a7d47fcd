"""House rules the default suite keeps: `ruff check` passes (its rules are in pyproject.toml,
[tool.ruff]), and no function of the project is over 120 lines (a longer one is several jobs:
split it into its stages, as train_codec was)."""
import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("snn", "codec", "channel", "device", "edge", "firmware_sim", "export", "bench", "tests")
MAX_FUNCTION_LINES = 120


def test_ruff_check_passes():
    ruff = Path(sys.executable).with_name("ruff")
    r = subprocess.run([str(ruff), "check", "--no-cache", "--output-format", "concise", "."], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]


def long_functions(root: Path = ROOT, limit: int = MAX_FUNCTION_LINES) -> list[str]:
    """'path:line name (N lines)' of every function or method longer than `limit` lines (def to
    its last line, nested functions included in their parent)."""
    found = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    lines = node.end_lineno - node.lineno + 1
                    if lines > limit:
                        found.append(f"{path.relative_to(root)}:{node.lineno} {node.name} ({lines} lines)")
    return found


def test_no_function_is_over_120_lines():
    assert not long_functions(), "split these into their stages:\n" + "\n".join(long_functions())


def test_the_length_check_counts_from_def_to_the_last_line(tmp_path):
    (tmp_path / "snn").mkdir()
    body = "".join(f"    x{i} = {i}\n" for i in range(MAX_FUNCTION_LINES))
    (tmp_path / "snn" / "m.py").write_text(f"def short():\n    pass\n\n\ndef long():\n{body}")
    assert long_functions(tmp_path) == [f"snn/m.py:5 long ({MAX_FUNCTION_LINES + 1} lines)"]
