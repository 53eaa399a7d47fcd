"""Results out over MQTT: every answered inference as one JSON message on PREFIX/<device>/result.

`snn edge serve --mqtt mqtt://HOST:PORT[/PREFIX]` (``mqtts://`` for TLS; default port 1883 or
8883, default prefix ``snn``). Messages go at QoS 1 (the broker acknowledges each; an
unacknowledged one is sent again after a reconnect), never retained. The record carries the
device id, label, class name, confidence, the edge's BER estimate, codec, frame counter, the
ground truth when the device sent one, the transport and the timings: never a key, never the
payload.

The model never waits for the broker: `offer()` appends to a bounded outbox and returns. A
publisher thread hands messages to paho-mqtt (whose own queue is capped at the in-flight window)
while the broker is connected; while it is not (down, unreachable, refusing our credentials),
the outbox holds the newest `outbox` messages and drops the oldest, counting each
(`snn_edge_mqtt_messages_total{outcome="dropped"}`). paho reconnects by itself with a back-off
of 1 to 30 s. Credentials: ``--mqtt-username`` and a password read from ``--mqtt-password-file``
or ``$SNN_MQTT_PASSWORD`` (never a command-line argument, which other users can read in ps).
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time
import urllib.parse
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from snn.errors import SnnError

log = logging.getLogger("snn.edge.mqtt")

DEFAULT_PREFIX = "snn"
INFLIGHT = 64               # QoS 1 messages handed to paho and not yet acknowledged
OUTCOMES = ("published", "dropped", "failed")


@dataclass(frozen=True)
class MqttOptions:
    """Where and how to publish (from `snn edge serve --mqtt*`)."""

    host: str
    port: int
    prefix: str = DEFAULT_PREFIX
    tls: bool = False
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    username: str | None = None
    password: str | None = None
    client_id: str = ""
    outbox: int = 10_000
    keepalive_s: int = 30

    def topic(self, device_id: int) -> str:
        return f"{self.prefix}/{int(device_id)}/result"

    def describe(self) -> str:
        """Where we publish, for the ready line and the log (no secret)."""
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}/{self.prefix}"


def parse_mqtt_url(url: str, *, ca_file: str | None = None, cert_file: str | None = None,
                   key_file: str | None = None, username: str | None = None, password_file: str | None = None,
                   client_id: str | None = None, outbox: int = 10_000) -> MqttOptions:
    """`mqtt://HOST[:PORT][/PREFIX]` or `mqtts://...` and the credential flags -> MqttOptions
    (SnnError with a one-line reason on anything wrong)."""
    parsed = urllib.parse.urlsplit(str(url).strip())
    scheme = parsed.scheme.lower()
    if scheme not in ("mqtt", "mqtts"):
        raise SnnError(f"--mqtt {url}: use mqtt://HOST:PORT[/PREFIX] or mqtts://HOST:PORT[/PREFIX]")
    if parsed.username or parsed.password:
        raise SnnError("--mqtt: put no credentials in the URL; use --mqtt-username and --mqtt-password-file "
                       "(or $SNN_MQTT_PASSWORD)")
    if parsed.query or parsed.fragment:
        raise SnnError(f"--mqtt {url}: the URL takes no query or fragment")
    try:
        port = parsed.port
    except ValueError:
        raise SnnError(f"--mqtt {url}: the port must be a number 1..65535") from None
    if not parsed.hostname:
        raise SnnError(f"--mqtt {url}: no broker host")
    tls = scheme == "mqtts" or bool(ca_file or cert_file)
    prefix = parsed.path.strip("/") or DEFAULT_PREFIX
    if any(c in prefix for c in "#+\0") or "//" in prefix:
        raise SnnError(f"--mqtt {url}: the topic prefix may not contain '#', '+', NUL or an empty level")
    if bool(cert_file) != bool(key_file):
        raise SnnError("--mqtt-cert and --mqtt-key go together (a client certificate and its key)")
    for flag, path in (("--mqtt-ca", ca_file), ("--mqtt-cert", cert_file), ("--mqtt-key", key_file)):
        if path and not Path(path).is_file():
            raise SnnError(f"{flag} {path}: no such file")
    password = None
    if password_file:
        try:
            password = Path(password_file).read_text(encoding="utf-8").strip("\r\n")
        except OSError as exc:
            raise SnnError(f"--mqtt-password-file {password_file}: {exc.strerror or exc}") from None
    elif os.environ.get("SNN_MQTT_PASSWORD"):
        password = os.environ["SNN_MQTT_PASSWORD"]
    if password is not None and not username:
        raise SnnError("a broker password needs --mqtt-username")
    if outbox < 1:
        raise SnnError("--mqtt-outbox must be at least 1")
    return MqttOptions(host=parsed.hostname, port=port or (8883 if tls else 1883), prefix=prefix, tls=tls,
                       ca_file=ca_file, cert_file=cert_file, key_file=key_file, username=username,
                       password=password, client_id=client_id or f"snn-edge-{os.getpid()}", outbox=outbox)


class MqttPublisher:
    """Publishes result records to a broker without ever blocking the caller (module docstring)."""

    def __init__(self, options: MqttOptions) -> None:
        try:
            import paho.mqtt.client as mqtt
        except ImportError:
            raise SnnError("--mqtt needs paho-mqtt: pip install -e '.[edge]'") from None
        self.options = options
        self._mqtt = mqtt
        self._outbox: deque[tuple[str, bytes]] = deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._inflight: set[int] = set()     # message ids handed to paho, not acknowledged yet
        self._acked_early: set[int] = set()  # acknowledged before publish() returned their id
        self.counts = dict.fromkeys(OUTCOMES, 0)
        self.connects = 0
        self.last_error: str | None = None
        client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
                             client_id=options.client_id, protocol=mqtt.MQTTv311, clean_session=True)
        if options.tls:
            import ssl
            try:
                client.tls_set(ca_certs=options.ca_file, certfile=options.cert_file, keyfile=options.key_file,
                               cert_reqs=ssl.CERT_REQUIRED, tls_version=ssl.PROTOCOL_TLS_CLIENT)
            except (OSError, ValueError, ssl.SSLError) as exc:
                raise SnnError(f"--mqtt TLS set-up failed: {exc}") from None
        if options.username:
            client.username_pw_set(options.username, options.password)
        client.max_inflight_messages_set(INFLIGHT)
        client.max_queued_messages_set(INFLIGHT)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        self.client = client
        self._thread = threading.Thread(target=self._run, name="mqtt-publisher", daemon=True)

    # --- the caller's side (event loop, model thread): never blocks ------------------------

    def offer(self, record: dict) -> None:
        """Queue one result record for PREFIX/<device>/result."""
        topic = self.options.topic(record["device"])
        payload = json.dumps(record, separators=(",", ":")).encode()
        with self._lock:
            if len(self._outbox) >= self.options.outbox:
                self._outbox.popleft()
                self.counts["dropped"] += 1
            self._outbox.append((topic, payload))
        self._wake.set()

    @property
    def queued(self) -> int:
        return len(self._outbox) + len(self._inflight)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    # --- lifetime ----------------------------------------------------------------------------

    def start(self) -> None:
        """Connect in the background (a broker that is down now is retried, never fatal)."""
        try:
            self.client.connect_async(self.options.host, self.options.port, keepalive=self.options.keepalive_s)
        except (OSError, ValueError) as exc:
            raise SnnError(f"--mqtt {self.options.describe()}: {exc}") from None
        self.client.loop_start()
        self._thread.start()

    def stop(self, drain_s: float = 2.0) -> None:
        """Give queued messages up to `drain_s` to go out, then disconnect."""
        deadline = time.monotonic() + drain_s
        while self.queued and self.connected and time.monotonic() < deadline:
            time.sleep(0.02)
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(2)
        try:
            self.client.disconnect()
        finally:
            self.client.loop_stop()

    # --- paho's network thread -----------------------------------------------------------------

    def _on_connect(self, client, userdata, flags, reason_code, properties=None) -> None:
        if reason_code.is_failure:
            self.last_error = f"broker refused the connection: {reason_code}"
            log.warning("mqtt: %s (%s)", self.last_error, self.options.describe())
            return
        self.connects += 1
        self._connected.set()
        self._wake.set()
        log.info("mqtt: connected to %s", self.options.describe())

    def _on_disconnect(self, client, userdata, flags, reason_code, properties=None) -> None:
        if self._connected.is_set():        # (a refused connect keeps its own reason as last_error)
            self.last_error = f"disconnected: {reason_code}"
            if not self._stop.is_set():
                log.warning("mqtt: disconnected from %s (%s); holding up to %d messages", self.options.describe(),
                            reason_code, self.options.outbox)
        self._connected.clear()

    def _on_publish(self, client, userdata, mid, reason_code=None, properties=None) -> None:
        with self._lock:
            if mid in self._inflight:
                self._inflight.discard(mid)
                self.counts["published"] += 1
            else:
                self._acked_early.add(mid)
        self._wake.set()

    # --- the publisher thread ------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(0.5)
            self._wake.clear()
            while self._connected.is_set() and not self._stop.is_set() and len(self._inflight) < INFLIGHT:
                with self._lock:
                    if not self._outbox:
                        break
                    topic, payload = self._outbox.popleft()
                try:
                    info = self.client.publish(topic, payload, qos=1, retain=False)
                except (OSError, ValueError, RuntimeError) as exc:   # a socket gone between checks
                    info, self.last_error = None, str(exc)
                ok = self._mqtt.MQTT_ERR_SUCCESS, self._mqtt.MQTT_ERR_NO_CONN   # NO_CONN: paho keeps it
                if info is None or info.rc not in ok:                            # and resends on reconnect
                    self.counts["failed"] += 1
                    continue
                with self._lock:
                    if info.mid in self._acked_early:
                        self._acked_early.discard(info.mid)
                        self.counts["published"] += 1
                    else:
                        self._inflight.add(info.mid)
                if info.rc == self._mqtt.MQTT_ERR_NO_CONN:
                    break

    def figures(self) -> dict:
        """What /metrics and the ready JSON say about results out."""
        return {"broker": self.options.describe(), "connected": self.connected, "connects": self.connects,
                "queued": self.queued, "outbox_max": self.options.outbox, **self.counts,
                "last_error": self.last_error}
