"""Results out over MQTT (edge/mqtt.py) against a real Mosquitto broker the test starts."""
import json
import shutil
import socket
import subprocess
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
