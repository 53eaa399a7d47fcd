"""Where the device's images come from: a data set, a folder being watched, stdin, a camera.

`open_source(spec, ...)` turns a `--data` spec into a `Source`, an iterable of `Sample`s already in
the encoder's input shape (uint8 H x W x C), converted by the same rules as training and
evaluation (`codec.image_folder`: 1 or 3 channels, bilinear resize, bounded decoding):

    fmnist:test, cifar10:PATH:test, folder:PATH[:test]   a data set on disk (with its labels)
    watch:DIR                                           each new PNG/JPEG file that appears in DIR
    -                                                   PNG/JPEG files piped on stdin
    raw:-        / raw:PATH                             raw frames on stdin / from a file or named pipe
    camera:0     / camera:/dev/video0 / camera:URL      a camera or stream (OpenCV, `.[camera]`)
    camera:FILE.mp4                                     every frame of a video file

A *live* source (`live = True`) produces over time; the client reads it in a thread
(`Feeder`) so that waiting for the next image never delays the replies, timeouts and resends of
the inferences in flight. A live source has no length: it ends at end of input, at `--count`, or
when the run is stopped.

`watch:DIR` rules: files present when the watch starts are not classified; a file is taken
once its size and modification time have held still for `settle_s` and it ends as a whole
PNG (``IEND`` chunk) or JPEG (``FF D9``) does, or after `give_up_s` of stillness whatever its end
(then a damaged file becomes an error record, not a stop); dotfiles, names ending in ``~``,
``.tmp``, ``.part`` and files of other suffixes are ignored (write a file under such a name and
rename it into place for an atomic hand-over); sub-folders are not entered; a file rewritten in
place (new size or modification time) is classified again. Memory stays bounded by the folder's
own listing.
"""
from __future__ import annotations

import os
import queue
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from codec.image_folder import IMAGE_SUFFIXES, MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS, convert_array, decode_image
from snn.errors import DataError, SnnError

IGNORED_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload", "~")
PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"


@dataclass(frozen=True)
class Sample:
    """One image for the device: `image` (H, W, C) uint8 in the encoder's shape, or None with
    `error` saying why it could not be read (recorded as a failed inference, never sent)."""

    image: np.ndarray | None
    truth: int | None = None
    name: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class Limits:
    """Bounds on what a live source may hand the decoder."""

    max_bytes: int = MAX_IMAGE_BYTES
    max_pixels: int = MAX_IMAGE_PIXELS


class Source:
    """An iterable of `Sample`s. `length` is known for data sets, None for live sources."""

    name: str = ""
    live: bool = False
    length: int | None = None

    def __iter__(self) -> Iterator[Sample]:
        raise NotImplementedError

    def close(self) -> None:
        """Release what the source holds (a camera, a thread)."""


# --- data sets -----------------------------------------------------------------------------

class DatasetSource(Source):
    """A data set spec (`codec.datasets`), labels mapped to the encoder's class order."""

    def __init__(self, spec: str, shape: tuple[int, int, int], classes: list[str]):
        from codec.datasets import load_dataset

        h, w, c = shape
        data = load_dataset(spec, shape=(c, h, w))   # an image folder is converted to what the encoder takes
        self.name = data.name
        self.images = data.images
        self.labels = _truth_labels(data, classes)
        self.length = len(data)

    def __iter__(self) -> Iterator[Sample]:
        return array_samples(self.images, self.labels)


def array_samples(images: np.ndarray, labels: np.ndarray | None = None) -> Iterator[Sample]:
    """Samples of uint8 images (N, H, W, C) already in the encoder's shape, with their labels."""
    for i in range(len(images)):
        yield Sample(images[i], None if labels is None else int(labels[i]))


def _truth_labels(data, classes: list[str]):
    """Labels in the encoder's class order, or None when they cannot be matched."""
    if not data.name.startswith("folder:"):
        return data.labels
    if not classes or any(c not in classes for c in data.classes):
        return None  # folder classes unknown to the codec: no ground truth
    remap = np.asarray([classes.index(c) for c in data.classes], dtype=np.int64)
    return remap[data.labels]


# --- a watched folder ------------------------------------------------------------------------

class WatchSource(Source):
    """Each new image file in a folder (rules in the module docstring), polled every `poll_s`."""

    live = True

    def __init__(self, folder: str | Path, shape: tuple[int, int, int], limits: Limits = Limits(),
                 poll_s: float = 0.1, settle_s: float = 0.2, give_up_s: float = 5.0):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise DataError(f"watch:{folder}: no such folder (create it, then start the device)")
        self.name = f"watch:{self.folder}"
        self.shape, self.limits = shape, limits
        self.poll_s, self.settle_s, self.give_up_s = poll_s, settle_s, give_up_s
        self._done = dict(self._listing())          # name -> (size, mtime_ns, inode) classified or pre-existing
        self._still: dict[str, tuple[tuple, float]] = {}   # name -> (key, monotonic time it was first seen so)
        self._stop = threading.Event()

    def _listing(self) -> Iterator[tuple[str, tuple]]:
        try:
            entries = list(os.scandir(self.folder))
        except OSError as exc:
            raise DataError(f"{self.name}: cannot list the folder ({exc.strerror or exc})") from None
        for entry in entries:
            name = entry.name
            if name.startswith(".") or name.lower().endswith(IGNORED_SUFFIXES):
                continue
            if Path(name).suffix.lower() not in IMAGE_SUFFIXES:
                continue
            try:
                if not entry.is_file():
                    continue
                st = entry.stat()
            except OSError:
                continue           # vanished between the listing and the stat
            yield name, (st.st_size, st.st_mtime_ns, st.st_ino)

    def _complete(self, path: Path, size: int) -> bool:
        """Does the file end as a whole PNG / JPEG does?"""
        if size < 4:
            return False
        try:
            with open(path, "rb") as fh:
                fh.seek(max(0, size - len(PNG_END)))
                tail = fh.read(len(PNG_END))
        except OSError:
            return False
        return tail.endswith(PNG_END) or tail.endswith(b"\xff\xd9")

    def _ready(self) -> list[tuple[str, tuple]]:
        """Files that are new and done being written, oldest first."""
        now = time.monotonic()
        listing = dict(self._listing())
        for gone in [n for n in self._done if n not in listing]:
            del self._done[gone]                 # bounded by the folder's own listing
        for gone in [n for n in self._still if n not in listing]:
            del self._still[gone]
        ready = []
        for name, key in listing.items():
            if self._done.get(name) == key:
                continue
            seen = self._still.get(name)
            if seen is None or seen[0] != key:
                self._still[name] = (key, now)
                continue
            quiet = now - seen[1]
            if quiet >= self.give_up_s or (quiet >= self.settle_s and key[0] > 0
                                           and self._complete(self.folder / name, key[0])):
                ready.append((name, key))
        return sorted(ready, key=lambda nk: (nk[1][1], nk[0]))

    def __iter__(self) -> Iterator[Sample]:
        h, w, c = self.shape
        while not self._stop.is_set():
            for name, key in self._ready():
                self._done[name] = key
                self._still.pop(name, None)
                path = self.folder / name
                try:
                    image = decode_image(path, c, (w, h), name=name, max_bytes=self.limits.max_bytes,
                                         max_pixels=self.limits.max_pixels)
                except DataError as exc:
                    yield Sample(None, name=name, error=str(exc))
                    continue
                yield Sample(image, name=name)
            self._stop.wait(self.poll_s)

    def close(self) -> None:
        self._stop.set()


# --- stdin ------------------------------------------------------------------------------------

class StdinSource(Source):
    """PNG/JPEG files or raw frames on a binary stream, stdin or a file (framing:
    `device.image_stream`)."""

    live = True

    def __init__(self, fh, shape: tuple[int, int, int], raw: bool = False, limits: Limits = Limits()):
        from device.image_stream import ImageStream, RawStream

        self.shape, self.raw, self.limits = shape, raw, limits
        self.fh = fh
        self.name = "raw:-" if raw else "stdin"
        h, w, c = shape
        self._stream = RawStream(fh, h * w * c) if raw else ImageStream(fh, limits.max_bytes)

    def __iter__(self) -> Iterator[Sample]:
        h, w, c = self.shape
        index = 0
        while True:
            if self.raw:
                frame = self._stream.next_frame()
                if frame is None:
                    return
                yield Sample(np.frombuffer(frame, np.uint8).reshape(h, w, c), name=f"{self.name}#{index}")
            else:
                data = self._stream.next_image()
                if data is None:
                    return
                name = f"stdin:{index}"
                try:
                    yield Sample(decode_image(data, c, (w, h), name=name, max_bytes=self.limits.max_bytes,
                                              max_pixels=self.limits.max_pixels), name=name)
                except DataError as exc:        # framed whole but undecodable: this image fails, the stream goes on
                    yield Sample(None, name=name, error=str(exc))
            index += 1

    def close(self) -> None:
        if self.fh is not getattr(sys.stdin, "buffer", None):
            self.fh.close()


# --- a camera (OpenCV) ---------------------------------------------------------------------

def _cv2():
    try:
        import cv2
    except ImportError:
        raise SnnError("camera: needs OpenCV: pip install -e '.[camera]' (opencv-python-headless)") from None
    return cv2


class CameraSource(Source):
    """Frames of an OpenCV `VideoCapture`: a camera index or device, a stream URL, or a video file.

    A video file gives every frame in order. A camera or stream is live: the device takes the
    newest frame whenever it is ready for one (older frames are dropped and counted), at most
    `fps` per second when given."""

    def __init__(self, target: str, shape: tuple[int, int, int], limits: Limits = Limits(),
                 fps: float | None = None):
        cv2 = _cv2()
        self.shape, self.limits, self.fps = shape, limits, fps
        self.name = f"camera:{target}"
        self.is_file = Path(target).is_file()
        self.live = True
        self.dropped = 0
        source = int(target) if target.isdigit() else target
        self.capture = cv2.VideoCapture(source)
        if not self.capture.isOpened():
            self.capture.release()
            raise DataError(f"camera:{target}: OpenCV cannot open it (a camera index such as 0, a device such as "
                            f"/dev/video0, a stream URL or a video file)")
        self._stop = threading.Event()
        self._latest: queue.Queue = queue.Queue(maxsize=1)

    def _frames(self) -> Iterator[tuple[int, np.ndarray | None, str | None]]:
        """(index, frame, error) as OpenCV reads them, until the end of a file or a failed read."""
        index = 0
        while not self._stop.is_set():
            ok, frame = self.capture.read()
            if not ok or frame is None:
                return
            h, w = frame.shape[:2]
            if h * w > self.limits.max_pixels:
                yield index, None, f"frame {index} is {w}x{h} pixels, over the {self.limits.max_pixels:,}-pixel limit"
            else:
                yield index, frame, None
            index += 1

    def _convert(self, index: int, frame: np.ndarray) -> Sample:
        cv2 = _cv2()
        h, w, c = self.shape
        if frame.ndim == 2:
            rgb = frame
        elif frame.shape[2] == 4:
            rgb = cv2.cvtColor(frame, cv2.COLOR_BGRA2RGB)
        else:
            rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        return Sample(convert_array(rgb, c, (w, h)), name=f"{self.name}#{index}")

    def _grab(self) -> None:
        """Live: keep only the newest frame in `_latest` (the one-slot queue)."""
        try:
            for index, frame, error in self._frames():
                item = (index, frame, error)
                try:
                    self._latest.put_nowait(item)
                except queue.Full:
                    try:
                        self._latest.get_nowait()
                        self.dropped += 1
                    except queue.Empty:
                        pass
                    self._latest.put_nowait(item)
        finally:
            self._latest.put(None)

    def __iter__(self) -> Iterator[Sample]:
        if self.is_file:
            for index, frame, error in self._frames():
                yield Sample(None, name=f"{self.name}#{index}", error=error) if error else self._convert(index, frame)
            return
        threading.Thread(target=self._grab, name="camera-grab", daemon=True).start()
        last = 0.0
        while True:
            item = self._latest.get()
            if item is None:
                return
            index, frame, error = item
            if self.fps:
                wait = last + 1.0 / self.fps - time.monotonic()
                if wait > 0:
                    self._stop.wait(wait)
                    continue           # take the frame that is newest after the wait
            last = time.monotonic()
            yield Sample(None, name=f"{self.name}#{index}", error=error) if error else self._convert(index, frame)

    def close(self) -> None:
        self._stop.set()
        self.capture.release()


# --- the spec ------------------------------------------------------------------------------

LIVE_HELP = ("watch:DIR (each new PNG/JPEG file in DIR), - (PNG/JPEG files piped on stdin), raw:- or "
             "raw:PATH (raw H*W*C uint8 frames of the encoder's shape on stdin, or from a file or named pipe), camera:0|/dev/videoN|URL|FILE[?fps=F] (OpenCV, "
             "pip install -e '.[camera]')")


def open_source(spec: str, shape: tuple[int, int, int], classes: list[str], *, limits: Limits = Limits(),
                stdin=None) -> Source:
    """The `Source` a `--data` spec names (see the module docstring); `shape` is (H, W, C)."""
    if spec in ("-", "raw:-"):
        return StdinSource(stdin if stdin is not None else sys.stdin.buffer, shape, raw=spec == "raw:-",
                           limits=limits)
    kind, _, rest = spec.partition(":")
    if kind == "raw":
        if not rest:
            raise DataError("raw needs a source: raw:- (stdin) or raw:PATH (a file or named pipe)")
        try:
            fh = open(rest, "rb")    # noqa: SIM115 - closed by the source
        except OSError as exc:
            raise DataError(f"raw:{rest}: cannot open it ({exc.strerror or exc})") from None
        source = StdinSource(fh, shape, raw=True, limits=limits)
        source.name = f"raw:{rest}"
        return source
    if kind == "watch":
        if not rest:
            raise DataError("watch needs a folder: use watch:DIR")
        return WatchSource(rest, shape, limits)
    if kind == "camera":
        if not rest:
            raise DataError("camera needs a source: camera:0 (the first camera), camera:/dev/video0, a stream "
                            "URL or a video file")
        target, fps = rest, None
        if "?" in rest and not Path(rest).exists():
            target, _, query = rest.rpartition("?")
            params = urllib.parse.parse_qs(query)
            if set(params) - {"fps"}:
                raise DataError(f"camera:{rest}: the only option is ?fps=F")
            try:
                fps = float(params["fps"][-1])
            except (KeyError, ValueError):
                raise DataError(f"camera:{rest}: fps must be a number, e.g. camera:0?fps=2") from None
            if fps <= 0:
                raise DataError(f"camera:{rest}: fps must be > 0")
        return CameraSource(target, shape, limits, fps=fps)
    return DatasetSource(spec, shape, classes)


class _Limited(Source):
    """The samples of a source from `offset`, at most `count` of them."""

    def __init__(self, source: Source, offset: int, count: int | None):
        self.source, self.offset, self.count = source, offset, count
        self.name, self.live = source.name, source.live
        self.folder = getattr(source, "folder", None)
        if source.length is None:
            self.length = None
        else:
            left = max(0, source.length - offset)
            self.length = left if count is None else min(left, count)

    def __iter__(self) -> Iterator[Sample]:
        if self.count is not None and self.count <= 0:
            return
        taken = 0
        for i, sample in enumerate(self.source):
            if i < self.offset:
                continue
            yield sample
            taken += 1
            if self.count is not None and taken >= self.count:
                return

    def close(self) -> None:
        self.source.close()


def limited(source: Source, offset: int = 0, count: int | None = None) -> Source:
    """`source` from its `offset`-th sample, at most `count` samples (None: all)."""
    return source if not offset and count is None else _Limited(source, offset, count)


class Feeder:
    """Reads a live source in a daemon thread into a bounded queue, so that waiting for the next
    image never stalls the client's loop. `get(timeout)` -> a Sample, None (nothing yet) or
    `Feeder.END`; an error the source raised is re-raised by `get`."""

    END = object()

    def __init__(self, source: Source, depth: int = 2):
        self.source = source
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="device-source", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for sample in self.source:
                while not self._stop.is_set():
                    try:
                        self._queue.put(sample, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if self._stop.is_set():
                    return
            self._put_end(self.END)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which raises it
            self._put_end(exc)

    def _put_end(self, item) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def get(self, timeout: float):
        try:
            item = self._queue.get(timeout=max(0.0, timeout)) if timeout > 0 else self._queue.get_nowait()
        except queue.Empty:
            return None
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        self._stop.set()
        self.source.close()
