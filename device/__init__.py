"""The device client: int8 ONNX encoder, packing, framing and a transport. Never imports torch.

The Python API is `device.connect` (`device/api.py`): `with connect(URL, encoder=...,
key_file=..., device_id=...) as dev: dev.classify(image)`.
"""

_API = ("connect", "Device", "Result", "NoAnswer")


def __getattr__(name: str):
    # the API is loaded on first use, so `import device.encoder` stays as light as it was
    if name in _API:
        from device import api
        return getattr(api, name)
    raise AttributeError(f"module 'device' has no attribute {name!r}")


__all__ = list(_API)
