"""`snn bench http-abuse`: a flood of idle HTTP connections against a real edge.

The bar of issue 13: 21,000 idle connections opened by three client processes (more than the
20,000 descriptors one process may hold here) while `/healthz` must answer within 1 s, the
edge's log must stay small, and a device must still get its labels over UDP.

Everything is real and on loopback: `snn edge serve` as a subprocess with its log in a file,
attacker processes (`python -m bench.http_abuse attack ...`, non-blocking sockets on epoll,
each from its own 127.0.0.x source address so that ports never run out) that open their share
of connections, send nothing (or, `--mode partial`, half a request) and reopen every connection
the edge closes, at most `--rate` connects per second each; a probe that opens a fresh
connection for every `GET /healthz`; and `snn device run` with the shipped int8 encoder over
UDP, once before the flood and once during it (the ratio is what the flood costs a device).
"""
from __future__ import annotations

import argparse
import errno
import json
import resource
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench.loadgen.metrics import Metrics
from bench.loadgen.server import EdgeServer, edge_server
from bench.loadgen.usage import fd_count, rss_kb
from snn.errors import SnnError

PARTIAL_REQUEST = b"GET /healthz HTTP/1.1\r\nHost: edge\r\n"
# Linux: bind() to a source address without reserving a port until connect() (so one source
# address can reach ~28k connections to one destination, not ~28k in all)
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)


# --- the attacker (a separate process) ---------------------------------------------------------

def _raise_fd_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def attack(host: str, port: int, count: int, seconds: float, rate: float, source: str = "",
           mode: str = "idle", max_connecting: int = 512, report=None) -> dict:
    """Hold up to `count` connections to host:port for `seconds`, reopening each one the server
    closes, at most `rate` connects per second. Calls report(dict) about once a second."""
    limit = _raise_fd_limit()
    if count > limit - 32:
        raise SnnError(f"{count} connections need more than this process's {limit} descriptors")
    sel = selectors.DefaultSelector()
    stats = {"source": source, "wanted": count, "established": 0, "connecting": 0, "opened": 0,
             "closed_by_server": 0, "connect_errors": {}, "held_max": 0, "held_min_after_ramp": None,
             "ramp_s": None}
    errors: dict[str, int] = stats["connect_errors"]
    tokens, burst = 0.0, max(1.0, rate / 20)
    t0 = last = last_report = time.monotonic()
    deadline = t0 + seconds

    def fail(err: int) -> None:
        name = errno.errorcode.get(err, str(err))
        errors[name] = errors.get(name, 0) + 1

    while True:
        now = time.monotonic()
        if now >= deadline:
            break
        tokens = min(burst, tokens + (now - last) * rate)
        last = now
        room = count - stats["established"] - stats["connecting"]
        n = min(int(tokens), room, max_connecting - stats["connecting"])
        for _ in range(max(0, n)):
            tokens -= 1
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            try:
                if source:
                    s.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
                    s.bind((source, 0))
                err = s.connect_ex((host, port))
            except OSError as exc:
                err = exc.errno or errno.EIO
            if err not in (0, errno.EINPROGRESS):
                fail(err)
                s.close()
                continue
            sel.register(s, selectors.EVENT_WRITE, "connecting")
            stats["connecting"] += 1
        for key, _mask in sel.select(timeout=0.01):
            s = key.fileobj
            if key.data == "connecting":
                stats["connecting"] -= 1
                err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    fail(err)
                    sel.unregister(s)
                    s.close()
                    continue
                stats["established"] += 1
                stats["opened"] += 1
                sel.modify(s, selectors.EVENT_READ, "open")
                if mode == "partial":
                    try:
                        s.send(PARTIAL_REQUEST)
                    except OSError:
                        pass
                continue
            try:
                data = s.recv(65536)
            except OSError:
                data = b""
            if not data:
                stats["established"] -= 1
                stats["closed_by_server"] += 1
                sel.unregister(s)
                s.close()
        held = stats["established"]
        stats["held_max"] = max(stats["held_max"], held)
        if stats["ramp_s"] is None and held >= count:
            stats["ramp_s"] = round(now - t0, 2)
        if stats["ramp_s"] is not None:
            low = stats["held_min_after_ramp"]
            stats["held_min_after_ramp"] = held if low is None else min(low, held)
        if report is not None and now - last_report >= 1.0:
            last_report = now
            report(dict(stats, t=round(now - t0, 1)))
    for key in list(sel.get_map().values()):
        key.fileobj.close()
    sel.close()
    return stats


def attacker_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.http_abuse attack")
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--rate", type=float, default=2000.0)
    p.add_argument("--source", default="")
    p.add_argument("--mode", choices=("idle", "partial"), default="idle")
    a = p.parse_args(argv)

    def report(stats: dict) -> None:
        print(json.dumps(stats), flush=True)

    stats = attack(a.host, a.port, a.count, a.seconds, a.rate, a.source, a.mode, report=report)
    print("DONE " + json.dumps(stats), flush=True)
    return 0


class Attacker:
    """One attacker process; `last` is its latest report, `result` its final one."""

    def __init__(self, host: str, port: int, count: int, seconds: float, rate: float, source: str,
                 mode: str) -> None:
        cmd = [sys.executable, "-m", "bench.http_abuse", "attack", host, str(port), "--count", str(count),
               "--seconds", str(seconds), "--rate", str(rate), "--source", source, "--mode", mode]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     cwd=str(Path(__file__).resolve().parents[1]))
        self.last: dict = {}
        self.result: dict | None = None
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            if line.startswith("DONE "):
                self.result = json.loads(line[5:])
            elif line.startswith("{"):
                self.last = json.loads(line)

    def finish(self, timeout: float) -> dict:
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._thread.join(5)
        if self.result is None:
            err = (self.proc.stderr.read() or "").strip().splitlines()
            raise SnnError(f"an attacker process failed: {err[-1] if err else self.proc.returncode}")
        return self.result


# --- the probes --------------------------------------------------------------------------------

def probe_healthz(host: str, port: int, timeout: float = 5.0) -> float | str:
    """Seconds for GET /healthz on a fresh connection (connect included), or why it failed."""
    t0 = time.monotonic()
    data = b""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            connected = time.monotonic() - t0
            s.settimeout(max(0.01, timeout - (time.monotonic() - t0)))
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: edge\r\nConnection: close\r\n\r\n")
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
    except OSError as exc:
        return f"{type(exc).__name__} after {time.monotonic() - t0:.2f} s with {len(data)} B"
    if not data.startswith(b"HTTP/1.1 200"):
        return f"answer {data[:20]!r}"
    total = time.monotonic() - t0
    if total > 1.0:
        return f"slow: connect {connected:.2f} s, answer {total - connected:.2f} s"
    return total


class HealthProbe:
    """GET /healthz every `interval_s` on a fresh connection, in a thread, until stopped."""

    def __init__(self, host: str, port: int, interval_s: float) -> None:
        self.host, self.port, self.interval_s = host, port, interval_s
        self.samples: list[float | str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> HealthProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            t0 = time.monotonic()
            self.samples.append(probe_healthz(self.host, self.port))
            self._stop.wait(max(0.0, self.interval_s - (time.monotonic() - t0)))


def summarize_probes(samples: list[float | str]) -> dict:
    """Latency figures of the probes that answered within 1 s; the others, counted and described
    (over_1s: answered late; failed: no answer)."""
    ok = sorted(s for s in samples if not isinstance(s, str))

    def pct(q: float) -> float | None:
        return round(ok[min(len(ok) - 1, int(q * len(ok)))] * 1000, 1) if ok else None

    slow = [s for s in samples if isinstance(s, str) and s.startswith("slow")]
    return {"probes": len(samples), "ok": len(ok), "failed": len(samples) - len(ok) - len(slow),
            "over_1s": len(slow), "p50_ms": pct(0.5), "p99_ms": pct(0.99),
            "max_ms": round(ok[-1] * 1000, 1) if ok else None,
            "failures": [s for s in samples if isinstance(s, str)][:5]}


def listen_overflows() -> int | None:
    """TcpExt ListenOverflows of this network namespace: connections the kernel dropped because
    a listening socket's accept queue was full (a client then retries its SYN after 1 s, 3 s...)."""
    try:
        lines = [ln.split() for ln in Path("/proc/net/netstat").read_text().splitlines() if ln.startswith("TcpExt:")]
        return int(lines[1][lines[0].index("ListenOverflows")])
    except (OSError, ValueError, IndexError):
        return None


def _loop_lags(m: Metrics) -> dict[str, int]:
    """How often the edge's 50-ms loop-lag timer fired over 0.25 s and over 1 s late (a stalled loop)."""
    name = "snn_edge_loop_lag_seconds_bucket"
    total = m.sum(name, le="+Inf")
    return {"over_250ms": int(total - m.sum(name, le="0.25")), "over_1s": int(total - m.sum(name, le="1.0"))}


def _rss_mb(pid: int) -> float | None:
    kb = rss_kb(pid)
    return round(kb / 1024, 1) if kb else None


def _device_run(encoder: Path, udp_url: str, count: int, out: Path, offset: int = 0,
                key_args: list[str] | None = None) -> dict:
    proc = subprocess.run([sys.executable, "-m", "snn", "device", "run", "--encoder", str(encoder),
                           "--to", udp_url, "--data", "fmnist:test", "--count", str(count),
                           "--offset", str(offset), "--truth", "--link", "none", "--window", "4",
                           "--timeout", "2", "--quiet", "--json", str(out), *(key_args or [])],
                          capture_output=True, text=True, timeout=300)
    if proc.returncode != 0 or not out.is_file():
        raise SnnError(f"snn device run failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]}")
    d = json.loads(out.read_text())
    return {k: d.get(k) for k in ("count", "answered", "accuracy", "rtt_p50_ms", "rtt_p99_ms")}


# --- the benchmark -----------------------------------------------------------------------------

def run_http_abuse(connections: int = 21000, clients: int = 3, hold_s: float = 20.0,
                   rate: float = 500.0, mode: str = "idle", max_connections: int | None = None,
                   idle_timeout: float | None = None, request_timeout: float | None = None,
                   device_count: int = 200, probe_interval_s: float = 0.25, bundle: str | None = None,
                   log=print) -> dict:
    """Start an edge, measure /healthz and a device, flood it, measure again; return figures."""
    if clients < 1 or connections < clients:
        raise SnnError("--clients must be at least 1 and --connections at least --clients")
    share = -(-connections // clients)
    if share > 60000:
        raise SnnError(f"{share} connections per client is more than one source address can open")
    extra = ["--log-level", "warning"]
    for flag, value in (("--http-max-connections", max_connections), ("--http-idle-timeout", idle_timeout),
                        ("--http-request-timeout", request_timeout)):
        if value is not None:
            extra += [flag, str(value)]
    encoder = None
    if device_count > 0:
        from export.shipped import default_int8_encoder
        encoder = default_int8_encoder(log=log)
    with tempfile.TemporaryDirectory(prefix="snn-http-abuse-") as tmp_name, \
            edge_server([bundle] if bundle is not None else None, extra, timeout=120.0, n_devices=1) as edge:
        tmp = Path(tmp_name)
        device_keys = ["--key-file", str(edge.write_device_keys(tmp / "device-keys.json", [1])), "--device-id", "1"]
        return _measure(edge, tmp, encoder, connections, clients, share, hold_s, rate, mode, device_count,
                        probe_interval_s, log, device_keys)


def _measure(edge: EdgeServer, tmp: Path, encoder, connections: int, clients: int, share: int, hold_s: float,
             rate: float, mode: str, device_count: int, probe_interval_s: float, log,
             device_keys: list[str]) -> dict:
    http, log_path, pid = edge.http, edge.log_path, edge.proc.pid
    host, port = http[len("http://"):].rsplit(":", 1)
    port = int(port)
    cap = int(edge.metrics().first("snn_edge_http_max_connections"))
    result: dict = {"connections": connections, "clients": clients, "rate_per_client": rate, "mode": mode,
                    "hold_s": hold_s, "max_connections": cap, "fd_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
                    "server": {"fds_idle": fd_count(pid), "rss_mb_idle": _rss_mb(pid)}}
    log(f"edge up at {http} (cap {cap} connections); baseline ...")
    with HealthProbe(host, port, probe_interval_s) as probe:
        if device_count > 0:
            result["device_baseline"] = _device_run(encoder, edge.udp, device_count, tmp / "d0.json",
                                                    key_args=device_keys)
        else:
            time.sleep(2.0)
    result["healthz_baseline"] = summarize_probes(probe.samples)
    log_bytes_before = log_path.stat().st_size
    lag0 = _loop_lags(edge.metrics())

    log(f"flood: {connections} idle connections from {clients} processes, held {hold_s:.0f} s ...")
    ramp_s = connections / (rate * clients)
    overflows0 = listen_overflows()
    attackers = [Attacker(host, port, share, ramp_s + hold_s + 2.0, rate, f"127.0.0.{2 + i}", mode)
                 for i in range(clients)]
    fds, rss, held = [], [], []
    try:
        with HealthProbe(host, port, probe_interval_s) as probe:
            deadline = time.monotonic() + ramp_s + hold_s
            device_thread = None
            device_out: dict = {}
            if device_count > 0:
                def run_device() -> None:
                    time.sleep(min(ramp_s, 5.0))
                    try:
                        device_out.update(_device_run(encoder, edge.udp, device_count, tmp / "d1.json",
                                                      offset=device_count, key_args=device_keys))
                    except SnnError as exc:
                        device_out["error"] = str(exc)
                device_thread = threading.Thread(target=run_device, daemon=True)
                device_thread.start()
            while time.monotonic() < deadline:
                time.sleep(0.5)
                fds.append(fd_count(pid) or 0)
                rss.append(_rss_mb(pid) or 0.0)
                held.append(sum(a.last.get("established", 0) for a in attackers))
            metrics = edge.metrics(timeout=10)
            lag1 = _loop_lags(metrics)
            if device_thread is not None:
                device_thread.join(300)
        result["healthz_flood"] = summarize_probes(probe.samples)
        if device_count > 0:
            result["device_flood"] = device_out
    finally:
        finals = []
        for a in attackers:
            try:
                finals.append(a.finish(ramp_s + hold_s + 30))
            except SnnError as exc:
                finals.append({"error": str(exc)})
    result["attackers"] = finals
    result["server"]["loop_stalls"] = {k: lag1[k] - lag0[k] for k in lag0}
    overflows1 = listen_overflows()
    result["listen_overflows"] = None if overflows0 is None or overflows1 is None else overflows1 - overflows0
    result["clients_held_max"] = max(held, default=0)
    result["clients_opened"] = sum(f.get("opened", 0) for f in finals)
    result["server"].update({
        "fds_max": max(fds, default=None), "rss_mb_max": max(rss, default=None),
        "open_at_end_of_flood": int(metrics.first("snn_edge_http_connections") or 0),
        "open_peak": int(metrics.first("snn_edge_http_connections_peak") or 0),
        "closed": {k: int(v) for k, v in metrics.by_label("snn_edge_http_closed_total", "reason").items()},
        "accept_errors": {k: int(v) for k, v in metrics.by_label("snn_edge_http_accept_errors_total",
                                                                 "errno").items()}})
    # after the flood: the edge recovers on its own
    time.sleep(0.5)
    result["healthz_after"] = summarize_probes([probe_healthz(host, port) for _ in range(5)])
    text = log_path.read_text(errors="replace")
    flood_log = text.encode()[log_bytes_before:]
    result["log"] = {"bytes": len(text.encode()), "bytes_during_flood": len(flood_log),
                     "lines_during_flood": flood_log.count(b"\n"), "tracebacks": text.count("Traceback"),
                     "tail": text.splitlines()[-8:]}
    flood, dev = result["healthz_flood"], result.get("device_flood", {})
    result["bar_met"] = bool(flood["failed"] == 0 and flood["over_1s"] == 0 and result["log"]["tracebacks"] == 0
                             and result["log"]["bytes_during_flood"] < 64 * 1024
                             and (device_count == 0 or (dev.get("answered") or 0) >= 0.99 * device_count))
    return result


def format_http_abuse(r: dict) -> str:
    b, f, s = r["healthz_baseline"], r["healthz_flood"], r["server"]
    lines = [f"HTTP abuse: {r['connections']} {r['mode']} connections from {r['clients']} processes "
             f"(at most {r['rate_per_client']:.0f} connects/s each, reopened when closed), held {r['hold_s']:.0f} s; "
             f"edge cap {r['max_connections']}, fd limit {r['fd_limit']}",
             f"  clients held at most {r['clients_held_max']} at once, opened {r['clients_opened']} in all",
             f"  edge: open connections peak {s['open_peak']}, descriptors idle {s['fds_idle']} / max {s['fds_max']}, "
             f"RSS idle {s['rss_mb_idle']} / max {s['rss_mb_max']} MB; loop stalls during the flood: "
             f"{s['loop_stalls']['over_250ms']} over 0.25 s, {s['loop_stalls']['over_1s']} over 1 s",
             f"  edge closed: {s['closed']}; accept errors: {s['accept_errors']}; connections the kernel "
             f"dropped with the accept queue full: {r['listen_overflows']}",
             "  /healthz (fresh connection each)  probes  failed  >1s   p50 ms   p99 ms   max ms",
             f"    before the flood              {b['probes']:>7} {b['failed']:>7} {b['over_1s']:>4} "
             f"{b['p50_ms']!s:>8} {b['p99_ms']!s:>8} {b['max_ms']!s:>8}",
             f"    during the flood              {f['probes']:>7} {f['failed']:>7} {f['over_1s']:>4} "
             f"{f['p50_ms']!s:>8} {f['p99_ms']!s:>8} {f['max_ms']!s:>8}",
             f"    after it                      {r['healthz_after']['probes']:>7} {r['healthz_after']['failed']:>7}"]
    if f["failures"]:
        lines.append(f"    failed or late probes during the flood: {'; '.join(f['failures'])}")
    for name in ("device_baseline", "device_flood"):
        d = r.get(name)
        if d:
            lines.append(f"  device over UDP, {name.split('_')[1]:<8}: answered {d.get('answered')}/{d.get('count')}, "
                         f"accuracy {d.get('accuracy')}, rtt p50 {d.get('rtt_p50_ms')} ms, p99 {d.get('rtt_p99_ms')} ms"
                         + (f" ({d['error']})" if "error" in d else ""))
    lg = r["log"]
    lines += [f"  edge log: {lg['bytes']} B in all, {lg['bytes_during_flood']} B / {lg['lines_during_flood']} lines "
              f"during the flood, {lg['tracebacks']} tracebacks",
              f"  bar (healthz < 1 s, no failure, log < 64 KiB, no traceback, device >= 99 % answered): "
              f"{'met' if r['bar_met'] else 'NOT met'}"]
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--connections", type=int, default=21000,
                        help="idle connections the clients keep open in all (default %(default)s)")
    parser.add_argument("--clients", type=int, default=3, help="attacker processes (default %(default)s)")
    parser.add_argument("--hold", type=float, default=20.0, metavar="S",
                        help="seconds the flood is held after its ramp (default %(default)s)")
    parser.add_argument("--rate", type=float, default=500.0,
                        help="connects per second per client, reconnects included (default %(default)s: "
                             "1,500/s from 3 clients, about what the edge accepts on the shared 2 cores)")
    parser.add_argument("--mode", choices=("idle", "partial"), default="idle",
                        help="idle: send nothing; partial: half a request, then stall")
    parser.add_argument("--max-connections", type=int, metavar="N",
                        help="the edge's --http-max-connections (default: its own default)")
    parser.add_argument("--idle-timeout", type=float, metavar="S", help="the edge's --http-idle-timeout (default: "
                                                                        "the edge's own default)")
    parser.add_argument("--request-timeout", type=float, metavar="S", help="the edge's --http-request-timeout "
                                                                           "(default: the edge's own default)")
    parser.add_argument("--device-count", type=int, default=200,
                        help="inferences a device runs over UDP before and during the flood (0: none)")
    parser.add_argument("--bundle", metavar="B", help="bundle the edge serves (default: the shipped one)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="write the figures as JSON to PATH (default: not "
                                                                  "written)")


def run(args, write_json) -> int:
    if args.hold <= 0 or args.rate <= 0:
        raise SnnError("--hold and --rate must be > 0")
    result = run_http_abuse(args.connections, args.clients, args.hold, args.rate, args.mode,
                            args.max_connections, args.idle_timeout, args.request_timeout,
                            max(0, args.device_count), bundle=args.bundle,
                            log=lambda msg: print(msg, file=sys.stderr, flush=True))
    print(format_http_abuse(result))
    write_json(args.json, result)
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    if len(sys.argv) > 1 and sys.argv[1] == "attack":
        sys.exit(attacker_main(sys.argv[2:]))
    sys.exit("usage: python -m bench.http_abuse attack HOST PORT --count N --seconds S [--rate R]")
