"""The device as a Python library: `connect(...)` -> a `Device` that classifies images.

    from device import connect

    with connect("udp://edge.local:9000", encoder="encoder.int8.onnx",
                 key_file="keys.json", device_id=1) as dev:
        result = dev.classify("photo.jpg")          # a path, PNG/JPEG bytes, a numpy array or a PIL image
        print(result.label, result.class_name, result.confidence, result.rtt_ms)

`snn device run` is built on the same object, so keys and counters (the state file beside the
keys file), the link model, the MTU, header copies, timeouts and resends behave exactly as in
the CLI (`snn device run --help` documents each). `classify` sends one inference and waits for
its answer; `classify_many` keeps up to `window` in flight and yields results in input order.
An inference the edge does not answer raises `NoAnswer` (a `SnnError`) carrying its record, so a
caller never mistakes silence for a label. A `Device` is not thread-safe: use one per thread,
each with its own device id (two processes must never share a device id's counter state).
No torch: onnxruntime, numpy, Pillow and the wire format only.
"""
from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from device.sources import Limits, Sample
from snn.errors import SnnError


class NoAnswer(SnnError):
    """The edge did not answer an inference (lost after every resend, or refused it)."""

    def __init__(self, message: str, record) -> None:
        super().__init__(message)
        self.record = record


@dataclass(frozen=True)
class Result:
    """The edge's answer to one inference, with what it cost."""

    label: int
    class_name: str | None
    confidence: float
    ber: float                 # the edge's estimate of the uplink bit error rate for this frame
    rtt_ms: float              # first transmission to authenticated answer (resends included)
    encode_ms: float           # int8 encoder + packing on this device
    bytes_on_air: int          # one transmission, every fragment
    attempts: int              # transmissions it took (1 + resends)
    counter: int               # frame counter of the last transmission
    name: str | None = None    # the caller's name for the image (file name for paths)


def device_identity(key_file: str | Path | None, device_id: int, insecure: bool = False,
                    state: str | Path | None = None) -> tuple:
    """(DeviceKey, CounterStore) from a keys file (snn keys new) and device id, or the insecure
    all-zero key (only for an edge run with --insecure)."""
    from codec.wire.crypto import ZERO_KEY
    from codec.wire.keys import CounterStore, DeviceKey, device_key, state_path

    if key_file and insecure:
        raise SnnError("--key-file and --insecure exclude each other")
    if not 0 <= int(device_id) <= 0xFFFF:
        raise SnnError("--device-id must lie in 0..65535")
    if key_file:
        key = device_key(key_file, int(device_id))
        # validated and locked; with no state the client resynchronises first (docs/PROTOCOL.md §4.3, §4.7)
        return key, CounterStore(state or state_path(key_file, int(device_id)), key=key.key, device_id=int(device_id))
    if not insecure:
        raise SnnError("the device needs --key-file FILE --device-id ID (from 'snn keys new'), or --insecure "
                       "for an edge run with --insecure")
    start = 0 if state else (time.time_ns() // 16_000) & 0xFFFFFFFF
    return DeviceKey(int(device_id), ZERO_KEY, None), CounterStore(state, start=start, key=ZERO_KEY,
                                                                   device_id=int(device_id))


class Device:
    """A connected device: an encoder, a transport to the edge and the client policy between them.
    Made by `connect`; a context manager that closes the transport."""

    def __init__(self, client, transport, link, limits: Limits):
        self.client = client
        self.transport = transport
        self.link = link
        self.limits = limits
        self.encoder = client.encoder
        self.info = client.encoder.info
        self.classes = list(self.info.classes)
        self._next_index = 0

    # --- images in --------------------------------------------------------------------

    def sample(self, image, name: str | None = None, truth: int | None = None) -> Sample:
        """`image` (path, PNG/JPEG bytes, numpy array, PIL image) as a Sample of the encoder's
        shape, by the conversion rules of training (`codec.image_folder`)."""
        from codec.image_folder import convert_array, decode_image

        h, w, c = self.info.input_shape
        if isinstance(image, (str, Path)):
            return Sample(decode_image(Path(image), c, (w, h), max_bytes=self.limits.max_bytes,
                                       max_pixels=self.limits.max_pixels), truth, name or Path(image).name)
        if isinstance(image, (bytes, bytearray, memoryview)):
            return Sample(decode_image(bytes(image), c, (w, h), name=name, max_bytes=self.limits.max_bytes,
                                       max_pixels=self.limits.max_pixels), truth, name)
        if hasattr(image, "convert") and hasattr(image, "size"):      # a PIL image
            image = np.asarray(image.convert("L" if c == 1 else "RGB"))
        arr = np.asarray(image)
        if arr.dtype != np.uint8:
            raise SnnError(f"images are uint8 pixels, got {arr.dtype}")
        if arr.ndim == 2:
            arr = arr[..., None]
        if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
            raise SnnError(f"an image is (H, W) or (H, W, C) with C 1, 3 or 4, got shape {arr.shape}")
        if arr.shape[0] * arr.shape[1] > self.limits.max_pixels:
            raise SnnError(f"image of {arr.shape[1]}x{arr.shape[0]} pixels is over the "
                           f"{self.limits.max_pixels:,}-pixel limit")
        if arr.shape != (h, w, c):
            arr = convert_array(arr, c, (w, h))
        return Sample(np.ascontiguousarray(arr), truth, name)

    # --- inferences -------------------------------------------------------------------

    def classify(self, image, *, name: str | None = None, truth: int | None = None) -> Result:
        """Send one image and wait for its answer (raises `NoAnswer` when none comes)."""
        return next(self.classify_many([self.sample(image, name, truth)]))

    def classify_many(self, images: Iterable) -> Iterator[Result]:
        """Results for `images` (each as `classify` takes, or a `Sample`) in input order, up to the
        client's window in flight at once; the first inference not answered raises `NoAnswer`."""
        samples = (x if isinstance(x, Sample) else self.sample(x) for x in images)
        waiting: dict[int, object] = {}
        want = self._next_index
        for rec in self.run(samples):
            waiting[rec.index] = rec
            while want in waiting:
                yield self.result(waiting.pop(want))
                want += 1
        if self.client.source_error is not None:     # an image that could not be converted
            raise self.client.source_error

    def run(self, samples: Iterable[Sample], stop=None) -> Iterator:
        """The client's records as each inference finishes (completion order); `snn device run`
        drives this with its data source."""
        start = self._next_index
        for rec in self.client.stream(samples, stop=stop, first_index=start):
            self._next_index = max(self._next_index, rec.index + 1)
            yield rec

    def result(self, rec) -> Result:
        """The Result of a finished record, or NoAnswer."""
        if rec.status != "ok":
            raise NoAnswer(f"no answer to inference {rec.index}"
                           f"{' (' + rec.name + ')' if rec.name else ''}: {rec.error or rec.status}", rec)
        names = self.classes
        return Result(label=int(rec.label), class_name=names[rec.label] if 0 <= rec.label < len(names) else None,
                      confidence=float(rec.confidence), ber=float(rec.edge_ber), rtt_ms=float(rec.rtt_ms),
                      encode_ms=float(rec.encode_ms), bytes_on_air=int(rec.bytes_on_air),
                      attempts=int(rec.attempts), counter=int(rec.counter), name=rec.name)

    def summary(self) -> dict:
        """The run's figures (`snn device run --json` keys)."""
        return self.client.summary()

    # --- lifetime -----------------------------------------------------------------------

    def close(self) -> None:
        """Close the transport; persist the exact next counter and release the state's lock."""
        try:
            self.transport.close()
        finally:
            self.client.counters.close()

    def __enter__(self) -> "Device":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def connect(to: str, *, encoder: str | Path, key_file: str | Path | None = None, device_id: int = 1,
            insecure: bool = False, state: str | Path | None = None, link: str | None = "lora-sf7",
            mtu: int | None = None, header_copies: int | str = "auto", timeout: float = 2.0, retries: int = 2,
            window: int = 4, send_truth: bool = False, threads: int = 1, limits: Limits = Limits(),
            on_result=None, keep_records: int = 10_000) -> Device:
    """A `Device` talking to the edge at `to` (udp://HOST:PORT, serial:///dev/ttyX?baud=N, sim://NAME),
    with the int8 `encoder` and this device's key (`key_file` + `device_id`, or `insecure`).

    `link` is the link model for time on air and the default MTU ('none' or None for neither);
    the other arguments are `snn device run`'s flags of the same names, with the same defaults."""
    from channel.transports import open_transport
    from device.client import DeviceClient
    from device.encoder import OnnxEncoder

    if header_copies != "auto":
        try:
            header_copies = int(header_copies)
        except (TypeError, ValueError):
            raise SnnError(f"header copies must be auto or a number, got {header_copies!r}") from None
    key, counters = device_identity(key_file, device_id, insecure, state)
    try:
        enc = OnnxEncoder(encoder, threads=threads)
        link_model = None
        if link and str(link).lower() != "none":
            from channel.links import get_link
            link_model = get_link(link)
        transport = open_transport(to)
    except BaseException:
        counters.close()
        raise
    size = mtu or (link_model.mtu if link_model else 1400)
    if getattr(transport, "mtu", None):
        size = min(size, transport.mtu)
    try:
        client = DeviceClient(enc, transport, key=key, counters=counters, mtu=size, link=link_model,
                              timeout=timeout, retries=retries, window=window, send_truth=send_truth,
                              on_result=on_result, header_copies=header_copies, keep_records=keep_records)
    except SnnError:
        transport.close()
        counters.close()
        raise
    return Device(client, transport, link_model, limits)
