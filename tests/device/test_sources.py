"""Live input on the device: the stdin framing, a watched folder, a camera (video file), --jsonl
and the Python API (`device.connect`), against the stand-in edge and a real `snn edge serve`."""
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from snn.errors import DataError

ROOT = Path(__file__).resolve().parents[2]


def _png(arr: np.ndarray) -> bytes:
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _jpeg(arr: np.ndarray, **kw) -> bytes:
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", **kw)
    return buf.getvalue()


@pytest.fixture(scope="module")
def fmnist():
    from codec.datasets import load_dataset
    return load_dataset("fmnist:test").take(60)


def _snn(*args, **kw):
    return subprocess.run([sys.executable, "-m", "snn", *args], capture_output=True, cwd=str(ROOT), **kw)


# --- the stdin framing -------------------------------------------------------------------

def test_a_stream_of_png_and_jpeg_files_splits_into_exactly_those_files():
    from PIL import Image

    from device.image_stream import ImageStream

    rng = np.random.default_rng(0)
    noisy = rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)
    thumb = io.BytesIO()
    Image.fromarray(noisy[:8, :8]).save(thumb, format="JPEG")         # a whole JPEG (FF D8 ... FF D9) ...
    exif = Image.Exif()
    exif[0x010E] = "x" * 10
    files = [_png(noisy), _jpeg(noisy, quality=90),
             _jpeg(noisy, progressive=True, quality=70),                 # several scans
             _jpeg(noisy, restart_marker_blocks=1),                      # RSTn markers inside the scan
             _jpeg(noisy, exif=exif.tobytes() + thumb.getvalue()),       # ... inside an APP1 segment
             _png(noisy[..., 0])]
    stream = ImageStream(io.BytesIO(b"".join(files)), max_bytes=1 << 20)
    got = []
    while (one := stream.next_image()) is not None:
        got.append(one)
    assert got == files


@pytest.mark.parametrize("data, needle", [
    (b"GIF89a....", "not the start of a PNG"),
    (None, "ended inside a PNG"),            # truncated
    (b"\x89PN", "ended inside a PNG signature"),
])
def test_a_broken_stream_is_a_clear_error(data, needle):
    from device.image_stream import ImageStream

    if data is None:
        data = _png(np.zeros((20, 20), np.uint8))[:-7]
    with pytest.raises(DataError, match=needle):
        ImageStream(io.BytesIO(data), max_bytes=1 << 20).next_image()


def test_an_image_over_the_byte_limit_is_refused_before_it_is_read_whole():
    from device.image_stream import ImageStream

    class Endless(io.RawIOBase):          # a PNG whose IDAT never ends
        sent = 0

        def readable(self):
            return True

        def readinto(self, b):
            head = b"\x89PNG\r\n\x1a\n" + (0x7FFFFFFF).to_bytes(4, "big") + b"IDAT"
            data = head if self.sent == 0 else b"\0" * len(b)
            n = min(len(b), len(data))
            b[:n] = data[:n]
            self.sent += n
            return n

    src = Endless()
    with pytest.raises(DataError, match="over the 100000-byte limit"):
        ImageStream(io.BufferedReader(src), max_bytes=100_000).next_image()
    assert src.sent < 200_000
    scan = b"\xff\xd8\xff\xda\x00\x02" + b"\x12" * 300_000       # a JPEG scan that never ends
    with pytest.raises(DataError, match="over the 100000-byte limit"):
        ImageStream(io.BytesIO(scan), max_bytes=100_000).next_image()


def test_raw_frames_and_a_partial_last_frame():
    from device.image_stream import RawStream

    s = RawStream(io.BytesIO(bytes(range(10)) * 2 + b"\1\2"), 10)
    assert s.next_frame() == bytes(range(10)) and s.next_frame() == bytes(range(10))
    with pytest.raises(DataError, match="ended inside a raw frame"):
        s.next_frame()
    assert RawStream(io.BytesIO(b""), 10).next_frame() is None


# --- the watched folder --------------------------------------------------------------------

def test_watch_takes_new_whole_files_only(tmp_path):
    from device.sources import WatchSource

    img = _png(np.full((30, 30), 99, np.uint8))
    (tmp_path / "old.png").write_bytes(img)                          # there before the watch: skipped
    src = WatchSource(tmp_path, (28, 28, 1), poll_s=0.02, settle_s=0.05, give_up_s=30)
    it = iter(src)
    (tmp_path / ".hidden.png").write_bytes(img)
    (tmp_path / "upload.png.part").write_bytes(img)
    (tmp_path / "notes.txt").write_text("x")
    half = tmp_path / "slow.png"
    half.write_bytes(img[:len(img) // 2])                            # half-written, then a pause
    time.sleep(0.3)
    (tmp_path / "staged.tmp").write_bytes(img)
    os.replace(tmp_path / "staged.tmp", tmp_path / "renamed.png")    # the atomic hand-over
    first = next(it)
    assert first.name == "renamed.png" and first.error is None and first.image.shape == (28, 28, 1)
    with half.open("ab") as fh:
        fh.write(img[len(img) // 2:])
    second = next(it)
    assert second.name == "slow.png" and int(second.image.mean()) == 99
    src.close()


def test_a_bomb_in_the_watched_folder_is_an_error_record(tmp_path):
    from PIL import Image

    from device.sources import Limits, WatchSource

    src = WatchSource(tmp_path, (28, 28, 1), Limits(max_pixels=1_000_000), poll_s=0.02, settle_s=0.05)
    it = iter(src)
    Image.new("L", (5000, 5000)).save(tmp_path / "bomb.png")         # 25 Mpx in a few KB
    got = next(it)
    assert got.image is None and "pixel limit" in got.error
    src.close()


# --- the CLI: watch:DIR, -, raw:-, camera:, --jsonl ---------------------------------------

def test_watch_dir_jsonl_classifies_files_copied_in_while_it_runs(int8_encoder, responder_factory, tmp_path, fmnist):
    r = responder_factory("udp://127.0.0.1:0")
    watch = tmp_path / "in"
    watch.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "snn", "device", "run", "--encoder", str(int8_encoder),
                             "--to", f"udp://127.0.0.1:{r.transport.local_address[1]}", "--insecure",
                             "--data", f"watch:{watch}", "--jsonl", "--json", str(tmp_path / "d.json")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=str(ROOT))
    try:
        line = proc.stderr.readline()
        while line and not line.startswith("watching"):
            line = proc.stderr.readline()
        assert line.strip() == f"watching {watch}"
        names = []
        for i in range(3):
            name = f"cam{i}.png"
            (watch / f".{name}").write_bytes(_png(fmnist.images[i][..., 0]))
            os.replace(watch / f".{name}", watch / name)
            names.append(name)
            lines = json.loads(proc.stdout.readline())
            assert lines["name"] == name and lines["status"] == "ok" and lines["class_name"]
        (watch / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really" + b"\xff\xd9")
        bad = json.loads(proc.stdout.readline())
        assert bad["name"] == "broken.jpg" and bad["status"] == "error" and "cannot read image" in bad["error"]
        proc.send_signal(signal.SIGTERM)                                 # a service manager stopping it
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert out == "" and "answered 3/4" in err
    s = json.loads((tmp_path / "d.json").read_text())
    assert s["stopped"] and [x["name"] for x in s["inferences"]] == names + ["broken.jpg"]


def test_watch_with_count_ends_by_itself(int8_encoder, responder_factory, tmp_path, fmnist):
    r = responder_factory("udp://127.0.0.1:0")
    proc = subprocess.Popen([sys.executable, "-m", "snn", "device", "run", "--encoder", str(int8_encoder),
                             "--to", f"udp://127.0.0.1:{r.transport.local_address[1]}", "--insecure",
                             "--data", f"watch:{tmp_path}", "--count", "2", "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=str(ROOT))
    assert proc.stderr.readline().startswith("watching")
    for i in range(3):
        (tmp_path / f"{i}.jpg").write_bytes(_jpeg(fmnist.images[i][..., 0]))
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "answered 2/2" in out


def test_pngs_piped_to_stdin_are_classified_by_a_real_edge(fmnist, tmp_path):
    from bench.stack import LocalStack
    from export.shipped import default_int8_encoder

    pngs = b"".join(_png(img[..., 0]) if i % 3 else _jpeg(img[..., 0], quality=95)
                    for i, img in enumerate(fmnist.images[:40]))
    raw = fmnist.images[:40].tobytes()
    with LocalStack() as stack:
        runs = {}
        for spec, data in (("-", pngs), ("raw:-", raw)):
            p = _snn("device", "run", "--encoder", str(default_int8_encoder()), "--to", stack.device_url,
                     *stack.device_args(3), "--data", spec, "--jsonl", input=data, timeout=120)
            assert p.returncode == 0, p.stderr.decode()
            runs[spec] = [json.loads(line) for line in p.stdout.decode().splitlines()]
    assert [len(v) for v in runs.values()] == [40, 40]
    assert all(x["status"] == "ok" for v in runs.values() for x in v)
    raw_labels = np.array([x["label"] for x in sorted(runs["raw:-"], key=lambda x: x["index"])])
    png_labels = np.array([x["label"] for x in sorted(runs["-"], key=lambda x: x["index"])])
    assert (raw_labels == fmnist.labels[:40]).mean() >= 0.8            # the shipped codec, on real images
    lossless = np.arange(40) % 3 != 0                                  # the PNGs carry the same pixels
    assert (png_labels[lossless] == raw_labels[lossless]).all()


def test_garbage_on_stdin_stops_with_a_clear_error_after_the_good_images(int8_encoder, responder_factory, fmnist):
    r = responder_factory("udp://127.0.0.1:0")
    data = _png(fmnist.images[0][..., 0]) + _png(fmnist.images[1][..., 0]) + b"garbage!"
    p = _snn("device", "run", "--encoder", str(int8_encoder), "--to", f"udp://127.0.0.1:{r.transport.local_address[1]}",
             "--insecure", "--data", "-", input=data, timeout=60)
    err = p.stderr.decode()
    assert p.returncode == 2 and "answered 2/2" in p.stdout.decode()
    assert "not the start of a PNG" in err and "Traceback" not in err


def test_camera_source_reads_every_frame_of_a_video_file(int8_encoder, responder_factory, tmp_path, fmnist):
    cv2 = pytest.importorskip("cv2", reason="OpenCV (pip install -e '.[camera]')")
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    assert writer.isOpened()
    for i in range(12):
        frame = cv2.resize(np.repeat(fmnist.images[i], 3, axis=2), (64, 48))
        writer.write(frame)
    writer.release()
    r = responder_factory("udp://127.0.0.1:0")
    p = _snn("device", "run", "--encoder", str(int8_encoder), "--to", f"udp://127.0.0.1:{r.transport.local_address[1]}",
             "--insecure", "--data", f"camera:{video}", "--jsonl", timeout=60)
    assert p.returncode == 0, p.stderr.decode()
    lines = [json.loads(x) for x in p.stdout.decode().splitlines()]
    assert len(lines) == 12 and all(x["status"] == "ok" for x in lines)
    assert sorted(x["name"] for x in lines)[0] == f"camera:{video}#0"
    bad = _snn("device", "run", "--encoder", str(int8_encoder), "--to", "udp://127.0.0.1:9", "--insecure",
               "--data", f"camera:{tmp_path / 'none.avi'}", timeout=60)
    assert bad.returncode == 2 and "OpenCV cannot open it" in bad.stderr.decode()


# --- the Python API -----------------------------------------------------------------------

def test_connect_classify_and_classify_many(int8_encoder, responder_factory, fmnist, tmp_path):
    from device import NoAnswer, connect

    r = responder_factory("udp://127.0.0.1:0")
    url = f"udp://127.0.0.1:{r.transport.local_address[1]}"
    (tmp_path / "x.png").write_bytes(_png(fmnist.images[0][..., 0]))
    with connect(url, encoder=int8_encoder, insecure=True, send_truth=True) as dev:
        one = dev.classify(fmnist.images[0], truth=4)
        assert one.label == 4 and one.rtt_ms > 0 and one.bytes_on_air > 0 and one.attempts == 1
        assert dev.classify(tmp_path / "x.png").name == "x.png"
        assert dev.classify((tmp_path / "x.png").read_bytes()).label == 0
        big = np.repeat(np.repeat(fmnist.images[0], 4, 0), 4, 1)          # another size: converted
        assert dev.classify(big[..., 0]).confidence == pytest.approx(0.9, abs=0.01)
        from device.sources import Sample
        many = list(dev.classify_many(Sample(img, int(t)) for img, t in zip(fmnist.images[:10], fmnist.labels[:10])))
        assert [m.label for m in many] == fmnist.labels[:10].tolist()     # in input order
        assert dev.summary()["answered"] == 14
    with connect("udp://127.0.0.1:9", encoder=int8_encoder, insecure=True, timeout=0.2, retries=0) as dev:
        with pytest.raises(NoAnswer, match="no answer"):
            dev.classify(fmnist.images[0])


def test_the_readme_python_example_runs():
    """README.md's Python API example, run as written against a real keyed edge (its address and
    keys file swapped for the test stack's)."""
    from bench.stack import LocalStack

    text = (ROOT / "README.md").read_text()
    code = re.search(r"<!-- python-api-example -->\s*```python\n(.*?)```", text, re.S).group(1)
    assert 'connect("udp://127.0.0.1:9000"' in code and '"keys.json"' in code
    with LocalStack() as stack:
        run = code.replace("udp://127.0.0.1:9000", stack.device_url).replace('"keys.json"', repr(str(stack.key_file)))
        p = subprocess.run([sys.executable, "-c", run], capture_output=True, text=True, cwd=str(ROOT), timeout=120)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.strip().splitlines()
    assert len(lines) >= 2 and re.match(r"\d+ \S", lines[0]), p.stdout


def test_live_input_keeps_going_while_the_edge_is_away(int8_encoder, fmnist, tmp_path):
    """A data-set run stops once an unreachable edge has cost a window; live input does not."""
    import socket as so
    with so.socket(so.AF_INET, so.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))            # bound and never read: silence
        data = b"".join(_png(img[..., 0]) for img in fmnist.images[:8])
        p = _snn("device", "run", "--encoder", str(int8_encoder), "--to", f"udp://127.0.0.1:{s.getsockname()[1]}",
                 "--insecure", "--data", "-", "--timeout", "0.2", "--retries", "0", "--window", "2",
                 "--json", str(tmp_path / "d.json"), input=data, timeout=60)
    summary = json.loads((tmp_path / "d.json").read_text())
    assert summary["lost"] == 8 and summary["unreachable"] is False and p.returncode == 1


def test_live_input_without_counter_state_keeps_resyncing_while_the_edge_is_away(int8_encoder, fmnist, tmp_path):
    """A keyed live device with no state must resynchronise before any DATA (docs/PROTOCOL.md
    §4.7); with the edge away, each inference is lost and the next tries again: no DATA frame is
    ever sent without a counter the edge vouched for, and the run does not stop."""
    import socket as so

    from codec.wire.control import is_control_length
    from codec.wire.keys import new_keys, write_keys
    keys = tmp_path / "keys.json"
    write_keys(keys, new_keys([5]))
    with so.socket(so.AF_INET, so.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))            # bound, never answers: what arrives is kept
        data = b"".join(_png(img[..., 0]) for img in fmnist.images[:3])
        p = _snn("device", "run", "--encoder", str(int8_encoder), "--to", f"udp://127.0.0.1:{s.getsockname()[1]}",
                 "--key-file", str(keys), "--device-id", "5", "--data", "-", "--timeout", "0.1", "--retries", "0",
                 "--window", "1", "--json", str(tmp_path / "d.json"), input=data, timeout=120)
        s.setblocking(False)
        sent = []
        try:
            while True:
                sent.append(s.recv(4096))
        except BlockingIOError:
            pass
    summary = json.loads((tmp_path / "d.json").read_text())
    assert summary["lost"] == 3 and summary["unreachable"] is False and p.returncode == 1, p.stderr
    assert sent and all(is_control_length(len(d)) for d in sent)     # RESYNCs only, never DATA
    assert not (tmp_path / "keys.json.dev5.state").exists()          # no counter was ever granted
