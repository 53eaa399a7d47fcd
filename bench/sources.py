"""What the bit-level baselines put on the link: the image as raw pixels, PNG or JPEG bytes.

Each source turns one uint8 image (H, W, C) into bytes and back. `decode` returns None when the
bytes no longer decode (a corrupted PNG fails its chunk CRC or zlib check; a corrupted JPEG may
still decode to a damaged picture, which is then classified as it is).
"""
from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np

JPEG_QUALITIES = (10, 30, 50, 75, 90)


@dataclass(frozen=True)
class Source:
    """A way of turning an image into bytes: `name`, and `kind` in raw | png | jpeg."""

    name: str
    kind: str
    quality: int | None = None

    def encode(self, image: np.ndarray) -> bytes:
        if self.kind == "raw":
            return np.ascontiguousarray(image, dtype=np.uint8).tobytes()
        from PIL import Image
        buf = io.BytesIO()
        pil = Image.fromarray(_squeeze(image))
        if self.kind == "png":
            pil.save(buf, format="PNG", optimize=True)
        else:
            pil.save(buf, format="JPEG", quality=int(self.quality), optimize=True)
        return buf.getvalue()

    def decode(self, data: bytes, shape: tuple[int, int, int]) -> np.ndarray | None:
        """The image (H, W, C) uint8 these bytes decode to, or None if they do not decode."""
        if self.kind == "raw":
            arr = np.frombuffer(data, dtype=np.uint8)
            if arr.size != int(np.prod(shape)):
                return None
            return arr.reshape(shape)
        from PIL import Image
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with Image.open(io.BytesIO(data)) as pil:
                    pil.load()
                    arr = np.asarray(pil.convert("L" if shape[2] == 1 else "RGB"))
        except Exception:  # noqa: BLE001 - any decoder error means the bytes are lost
            return None
        if arr.shape[:2] != tuple(shape[:2]):
            return None
        return arr.reshape(shape)


def _squeeze(image: np.ndarray) -> np.ndarray:
    return image[..., 0] if image.ndim == 3 and image.shape[2] == 1 else image


def default_sources(qualities=JPEG_QUALITIES) -> list[Source]:
    return ([Source("raw", "raw"), Source("png", "png")]
            + [Source(f"jpeg{q}", "jpeg", q) for q in qualities])


def encode_all(source: Source, images: np.ndarray) -> list[bytes]:
    return [source.encode(img) for img in images]


def decode_all(source: Source, payloads: list[bytes | None], shape) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, H, W, C) uint8, ok (N,) bool); failed ones are left black."""
    out = np.zeros((len(payloads), *shape), dtype=np.uint8)
    ok = np.zeros(len(payloads), dtype=bool)
    for i, data in enumerate(payloads):
        if data is None:
            continue
        img = source.decode(data, shape)
        if img is not None:
            out[i] = img
            ok[i] = True
    return out, ok
