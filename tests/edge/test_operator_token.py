"""The operator token file (edge/operator_auth.py) is read like a private key: a regular file of
mode 0600 or stricter holding one long token; anything else is one line, never a hang."""
import os
import stat
import threading

import pytest

from edge.operator_auth import load_or_create, read_token
from snn.errors import SnnError


def test_a_missing_token_file_is_made_private_and_read_back(tmp_path):
    path = tmp_path / "keys.json.operator-token"
    made = load_or_create(str(path))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and len(made.token) >= 32
    assert load_or_create(str(path)).token == made.token == read_token(str(path))
    assert made.allows(f"Bearer {made.token}") and not made.allows("Bearer " + "x" * 64)


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_a_token_file_others_may_read_is_refused(tmp_path, mode):
    path = tmp_path / "token"
    path.write_text("a" * 64 + "\n")
    path.chmod(mode)
    with pytest.raises(SnnError, match=r"chmod 600") as err:
        read_token(str(path))
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("text", ["", "short\n", "é" * 40, "two tokens " * 8])
def test_a_token_file_without_one_long_token_is_refused(tmp_path, text):
    path = tmp_path / "token"
    path.write_text(text)
    path.chmod(0o600)
    with pytest.raises(SnnError, match="at least 32 characters"):
        read_token(str(path))


def test_a_fifo_or_a_folder_is_refused_without_hanging(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o600)
    result: list[str] = []
    reader = threading.Thread(target=lambda: result.append(_refusal(fifo)), daemon=True)
    reader.start()
    reader.join(5)
    assert result and "not a regular file" in result[0]
    assert "not a regular file" in _refusal(tmp_path)


def _refusal(path) -> str:
    try:
        read_token(str(path))
    except SnnError as exc:
        return str(exc)
    return "accepted"
