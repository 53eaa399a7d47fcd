"""Results out over MQTT (edge/mqtt.py) against a real Mosquitto broker the test starts."""
import json
import shutil
import socket
import subprocess
import sys
import time

import pytest

from snn.errors import SnnError

MOSQUITTO = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/sbin")
pytestmark = pytest.mark.skipif(MOSQUITTO is None or shutil.which("mosquitto_sub") is None,
                                reason="Mosquitto not installed (apt-get install -y mosquitto mosquitto-clients)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    """A mosquitto on 127.0.0.1:`port` with a config the test writes."""

    def __init__(self, tmp_path, port: int | None = None, extra: str = "allow_anonymous true\n"):
        self.port = port or _free_port()
        self.conf = tmp_path / f"mosquitto-{self.port}.conf"
        # `user root`: as root, mosquitto would switch to user mosquitto, who cannot read pytest's tmp files
        self.conf.write_text(f"listener {self.port} 127.0.0.1\npersistence false\nuser root\n{extra}")
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"mosquitto exited: {self.proc.stderr.read()}") from None
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not start")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


class Subscriber:
    """mosquitto_sub -v on a topic filter; `lines(n)` waits for n lines of what it printed."""

    def __init__(self, port: int, topic: str = "#", *extra: str):
        import threading
        self.proc = subprocess.Popen(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-t", topic, "-q", "1",
                                      "-v", *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.got: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        time.sleep(0.3)

    def _read(self):
        for line in self.proc.stdout:
            self.got.append(line.rstrip("\n"))

    def lines(self, n: int, timeout: float = 15) -> list[str]:
        deadline = time.monotonic() + timeout
        while len(self.got) < n and time.monotonic() < deadline:
            time.sleep(0.05)
        return list(self.got)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(5)


@pytest.fixture
def broker(tmp_path):
    b = Broker(tmp_path)
    yield b
    b.stop()


def _record(i: int, device: int = 7) -> dict:
    return {"device": device, "label": i % 10, "class_name": "x", "confidence": 0.5, "ber": 0.0, "i": i,
            "timings": {"queue_ms": 0.1, "model_ms": 0.2, "total_ms": 0.4}}


def test_publishes_each_record_at_qos1_on_its_device_topic(broker):
    from edge.mqtt import MqttPublisher, parse_mqtt_url

    sub = Subscriber(broker.port, "fleet/+/result")
    pub = MqttPublisher(parse_mqtt_url(f"mqtt://127.0.0.1:{broker.port}/fleet"))
    pub.start()
    try:
        for i in range(50):
            pub.offer(_record(i, device=7 + i % 2))
        lines = sub.lines(50)
    finally:
        pub.stop()
        sub.stop()
    assert len(lines) == 50
    topics = {line.split(" ", 1)[0] for line in lines}
    assert topics == {"fleet/7/result", "fleet/8/result"}
    assert sorted(json.loads(line.split(" ", 1)[1])["i"] for line in lines) == list(range(50))
    assert pub.counts["published"] == 50 and pub.counts["dropped"] == 0


def test_a_broker_that_goes_down_costs_the_caller_nothing_and_the_outbox_is_bounded(tmp_path):
    from edge.mqtt import MqttPublisher, parse_mqtt_url

    b = Broker(tmp_path)
    port = b.port
    pub = MqttPublisher(parse_mqtt_url(f"mqtt://127.0.0.1:{port}", outbox=100))
    pub.start()
    try:
        deadline = time.monotonic() + 10
        while not pub.connected and time.monotonic() < deadline:
            time.sleep(0.05)
        b.stop()
        time.sleep(0.5)
        t0 = time.perf_counter()
        for i in range(1000):
            pub.offer(_record(i))
        spent = time.perf_counter() - t0
        assert spent < 0.5, spent                   # never waits for the broker
        assert pub.queued <= 100 + 64 and pub.counts["dropped"] >= 1000 - 100 - 64
        b = Broker(tmp_path, port=port)             # back: the newest messages go out
        sub = Subscriber(port, "snn/#")
        deadline = time.monotonic() + 40
        while pub.queued and time.monotonic() < deadline:
            time.sleep(0.1)
        assert pub.queued == 0 and pub.connects >= 2
        for i in range(1000, 1010):                  # (the subscriber is surely listening by now)
            pub.offer(_record(i))
        deadline = time.monotonic() + 10
        while not {*range(1000, 1010)} <= {json.loads(x.split(" ", 1)[1])["i"] for x in sub.got} \
                and time.monotonic() < deadline:
            time.sleep(0.05)
        sub.stop()
        got = [json.loads(line.split(" ", 1)[1])["i"] for line in sub.got]
        assert {*range(1000, 1010)} <= set(got)
        assert min(got) >= 1000 - 100 - 64           # what the outbox kept is the newest, never the oldest
    finally:
        pub.stop()
        b.stop()


def test_username_and_password_from_a_file(tmp_path):
    from edge.mqtt import MqttPublisher, parse_mqtt_url

    passwd = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwd), "edge", "s3cret"], check=True,
                   capture_output=True)
    b = Broker(tmp_path, extra=f"allow_anonymous false\npassword_file {passwd}\n")
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    try:
        sub = Subscriber(b.port, "snn/#", "-u", "edge", "-P", "s3cret")
        good = MqttPublisher(parse_mqtt_url(f"mqtt://127.0.0.1:{b.port}", username="edge",
                                            password_file=str(secret)))
        good.start()
        good.offer(_record(1))
        assert len(sub.lines(1)) == 1
        good.stop()
        secret.write_text("wrong")
        bad = MqttPublisher(parse_mqtt_url(f"mqtt://127.0.0.1:{b.port}", username="edge",
                                           password_file=str(secret)))
        bad.start()
        bad.offer(_record(2))
        time.sleep(1.5)
        assert not bad.connected and "refused" in (bad.last_error or "") and bad.queued == 1
        bad.stop(drain_s=0)
        sub.stop()
    finally:
        b.stop()


@pytest.mark.parametrize("url, kw, needle", [
    ("http://x:1", {}, "mqtt://HOST"),
    ("mqtt://user:pw@x:1", {}, "no credentials in the URL"),
    ("mqtt://x:1/a/+", {}, "may not contain"),
    ("mqtt://x:1/a#b", {}, "no query or fragment"),
    ("mqtt://x:99999", {}, "port"),
    ("mqtt://x:1", {"cert_file": "/etc/hostname"}, "go together"),
    ("mqtts://x:1", {"ca_file": "/nonexistent"}, "no such file"),
])
def test_bad_options_are_one_clear_error(url, kw, needle):
    from edge.mqtt import parse_mqtt_url

    with pytest.raises(SnnError, match=needle):
        parse_mqtt_url(url, **kw)


def _tls_files(tmp_path):
    """A CA and a server certificate for 127.0.0.1 signed by it (PEM files)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def name(cn):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(name("test CA")).issuer_name(name("test CA"))
          .public_key(ca_key.public_key()).serial_number(1).not_valid_before(now - datetime.timedelta(hours=1))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    cert = (x509.CertificateBuilder().subject_name(name("127.0.0.1")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(2).not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    files = {"ca": tmp_path / "ca.pem", "cert": tmp_path / "server.pem", "key": tmp_path / "server.key"}
    files["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files["key"].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    return files


def test_tls_to_a_broker_whose_certificate_the_ca_file_vouches_for(tmp_path):
    from edge.mqtt import MqttPublisher, parse_mqtt_url

    tls = _tls_files(tmp_path)
    b = Broker(tmp_path, extra=f"allow_anonymous true\ncafile {tls['ca']}\ncertfile {tls['cert']}\n"
                               f"keyfile {tls['key']}\n")
    try:
        sub = Subscriber(b.port, "snn/#", "--cafile", str(tls["ca"]))
        pub = MqttPublisher(parse_mqtt_url(f"mqtts://127.0.0.1:{b.port}", ca_file=str(tls["ca"])))
        pub.start()
        pub.offer(_record(3))
        lines = sub.lines(1)
        pub.stop()
        assert len(lines) == 1 and json.loads(lines[0].split(" ", 1)[1])["i"] == 3
        stranger = MqttPublisher(parse_mqtt_url(f"mqtts://127.0.0.1:{b.port}"))    # the system CAs: refused
        stranger.start()
        stranger.offer(_record(4))
        time.sleep(1.5)
        assert not stranger.connected and stranger.counts["published"] == 0
        stranger.stop(drain_s=0)
        sub.stop()
    finally:
        b.stop()


def _device_run(stack, *args, **kw):
    from export.shipped import default_int8_encoder

    return [sys.executable, "-m", "snn", "device", "run", "--encoder", str(default_int8_encoder()),
            "--to", stack.device_url, *stack.device_args(4), "--jsonl", *args]


def _messages(lines):
    return [json.loads(line.split(" ", 1)[1]) for line in lines]


def test_an_edge_publishes_every_answer_of_a_device_run_and_outlives_its_broker(tmp_path):
    """Issue 24's bar: `snn edge serve --mqtt` + a 200-image device run -> 200 messages, each with the
    label the device got; the broker stopped mid-run, the edge keeps answering the device."""
    from bench.stack import LocalStack
    from codec.datasets import load_dataset

    broker = Broker(tmp_path)
    sub = Subscriber(broker.port, "fleet/+/result")
    try:
        with LocalStack(extra_edge_args=("--mqtt", f"mqtt://127.0.0.1:{broker.port}/fleet")) as stack:
            assert stack.addresses["mqtt"] == f"mqtt://127.0.0.1:{broker.port}/fleet"
            run = subprocess.run(_device_run(stack, "--data", "fmnist:test", "--count", "200", "--truth"),
                                 capture_output=True, text=True, timeout=300)
            assert run.returncode == 0, run.stderr[-2000:]
            device = [json.loads(line) for line in run.stdout.splitlines()]
            assert len(device) == 200 and all(r["status"] == "ok" for r in device)
            published = _messages(sub.lines(200))
            # one message per answer the edge sent (a resent inference is answered under its new counter)
            assert len(published) >= 200 and len({m["counter"] for m in published}) == len(published)
            by_counter = {m["counter"]: m for m in published}
            for r in device:
                m = by_counter[r["counter"]]
                assert (m["device"], m["label"], m["class_name"], m["truth"]) == (4, r["label"], r["class_name"],
                                                                                  r["truth"])
            assert not {"key", "payload"} & set(published[0])
            _grafana_names_are_on(_metrics(stack))
            # a live run of 200 raw frames; the broker goes away after the first ~60
            images = load_dataset("fmnist:test").take(200).images
            out_file, err_file = open(tmp_path / "live.jsonl", "w+"), open(tmp_path / "live.err", "w+")
            proc = subprocess.Popen(_device_run(stack, "--data", "raw:-", "--count", "200", "--window", "1"),
                                    stdin=subprocess.PIPE, stdout=out_file, stderr=err_file)
            before = len(sub.got)
            for i, img in enumerate(images):
                proc.stdin.write(img.tobytes())
                proc.stdin.flush()
                if i == 100:
                    sub.lines(before + 50, timeout=30)
                    broker.stop()
                time.sleep(0.01)
            proc.stdin.close()
            proc.wait(300)
            out_file.close()
            err_file.close()
            assert proc.returncode == 0, (tmp_path / "live.err").read_text()[-2000:]
            live = [json.loads(line) for line in (tmp_path / "live.jsonl").read_text().splitlines()]
            assert len(live) == 200 and all(r["status"] == "ok" for r in live)   # every image still answered
            assert before + 50 <= len(sub.got) < before + 200                    # the broker saw only a part
    finally:
        sub.stop()
        broker.stop()


def _metrics(stack) -> str:
    """The edge's /metrics as its operator reads it."""
    import httpx

    token_file = stack.addresses.get("operator_token_file")
    headers = {"Authorization": "Bearer " + open(token_file).read().strip()} if token_file else {}
    r = httpx.get(stack.addresses["http"] + "/metrics", headers=headers, timeout=10)
    assert r.status_code == 200
    return r.text


def _grafana_names_are_on(exposition: str) -> None:
    """Every series docs/grafana/snn-edge.json queries is one the edge exports (an edge with --mqtt)."""
    import re
    from pathlib import Path

    board = json.loads((Path(__file__).resolve().parents[2] / "docs/grafana/snn-edge.json").read_text())
    exprs = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    exported = set(re.findall(r"^(snn_edge_[a-z_]+)", exposition, re.M))
    used = {name for e in exprs for name in re.findall(r"snn_edge_[a-z_]+", e)}
    assert len(used) >= 12 and used <= exported, used - exported
