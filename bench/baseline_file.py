"""Reading a learned baseline's checkpoint (`bench.deepcod`, `bench.adjscc`) safely.

A checkpoint is a `torch.save`d dict of tensors and plain data; it is read with
`torch.load(weights_only=True)` only, so a file that names anything else (a crafted pickle) is
refused, never run. It must say which baseline wrote it and which bundle it was trained on.
"""
from __future__ import annotations

from pathlib import Path

import torch

from snn.errors import BundleError


def read_record(path: str | Path, bundle, fmt: str, what: str, module: str) -> dict:
    """The checkpoint at `path` as a dict, checked to be a `fmt` file trained on `bundle`.

    `what` names the baseline in messages ("a DeepCOD-style codec"), `module` the command that
    retrains it (`python -m MODULE`)."""
    try:
        record = torch.load(Path(path), weights_only=True, map_location="cpu")
    except Exception as exc:  # noqa: BLE001 - unreadable, or a pickle naming more than tensors and plain data
        raise BundleError(f"{path} is not {what} file ({type(exc).__name__})") from None
    if not isinstance(record, dict) or record.get("format") != fmt:
        raise BundleError(f"{path} is not {what} written by {module}")
    if record.get("bundle_fingerprint") != bundle.fingerprint.hex():
        raise BundleError(f"{path} was trained on bundle {record.get('bundle_fingerprint')}, not on "
                          f"{bundle.fingerprint.hex()}: retrain it with 'python -m {module}'")
    return record
