"""The model half (BER-aware decoder + task head) on Ray Serve replicas; the fronts stay ours.

`snn edge serve --ray local|ADDRESS --replicas N`: the front process still binds UDP/serial/HTTP,
parses, authenticates, reassembles and micro-batches; only the forward pass moves. Each batch
the batcher cuts becomes one call `run(fingerprint, symbols, erased, ber) -> logits` on a replica
of the `EdgeHalf` deployment (one call per batch: per-frame calls measured ~17 calls/s on 2 cores,
batches of 64 ~60 calls/s), and the front runs as many batches at once as there are replicas.

- Symbols cross as uint8 (levels <= 256), erasures as bool, BER as float32: ~13 kB for a batch of
  64 at 98 symbols; logits come back as float32. The same `run` signature as an in-process engine
  (`RayEngine.run`), so swapping engines changes nothing in the batcher.
- Replicas load the bundles from the bytes the front sends with the deployment (no shared file
  system between hosts needed) and check each fingerprint on load.
- Serve starts with its HTTP proxy disabled (`proxy_location="Disabled"`): the ports are the
  fronts'; Serve's default 8000 would collide with ours.
- One application (`--ray-app`, default "snn-edge") serves a set of codecs; a second front that
  finds it running with its codecs reuses it (several fronts, one pool of replicas), and one that
  finds other codecs there is refused.

Ray is the optional extra `.[cluster]`; nothing else of the edge imports this module.
"""
from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from snn.errors import SnnError

log = logging.getLogger("snn.edge")

DEFAULT_APP = "snn-edge"
CALL_TIMEOUT_S = 30.0

# Token authentication on both sides, also when a front joins a cluster (Ray turns it on by
# default only for a cluster it starts itself); the token is RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or
# ~/.ray/auth_token. Set before Ray is imported: its config reads the mode once.
os.environ.setdefault("RAY_AUTH_MODE", "token")

try:
    import ray
    from ray import serve
except ImportError:  # pragma: no cover - exercised by the CLI's clear error
    ray = serve = None


class EdgeHalfReplica:
    """One replica: the edge halves of every served codec, by fingerprint (hex)."""

    def __init__(self, bundles: dict[str, bytes], threads: int = 1) -> None:
        import torch

        from codec.bundle import load_bundle

        torch.set_num_threads(max(1, threads))
        self.halves = {}
        for fp_hex, blob in bundles.items():
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "bundle.snn"
                path.write_bytes(blob)
                bundle = load_bundle(path, expect_fingerprint=bytes.fromhex(fp_hex))
            half = bundle.edge_half().eval()
            for p in half.parameters():
                p.requires_grad_(False)
            self.halves[fp_hex] = half

    def fingerprints(self) -> list[str]:
        return sorted(self.halves)

    def pid(self) -> int:
        return os.getpid()

    def run(self, fp_hex: str, symbols: np.ndarray, erased: np.ndarray, ber: np.ndarray) -> np.ndarray:
        """Logits float32 (N, classes) of one batch."""
        import torch

        with torch.inference_mode():
            # copies: Ray hands over read-only views of its object store
            logits = self.halves[fp_hex](torch.from_numpy(symbols.astype(np.int64)),
                                         torch.from_numpy(np.array(erased, dtype=bool)),
                                         torch.from_numpy(ber.astype(np.float32)))
        return logits.float().numpy()


class RayEngine:
    """The front's side of one codec on the deployment: `run(symbols, erased, ber) -> logits`
    (the `edge.engines` interface, so `ServedCodec.infer` runs it like the in-process engines)."""

    name = "ray"

    def __init__(self, handle, fingerprint_hex: str, levels: int, timeout_s: float = CALL_TIMEOUT_S) -> None:
        self._run = handle.options(method_name="run")
        self.fp = fingerprint_hex
        self.dtype = np.uint8 if levels <= 256 else np.int64
        self.timeout_s = timeout_s

    def run(self, symbols: np.ndarray, erased: np.ndarray, ber: np.ndarray) -> np.ndarray:
        response = self._run.remote(self.fp, np.ascontiguousarray(symbols, dtype=self.dtype),
                                    np.ascontiguousarray(erased, dtype=bool),
                                    np.ascontiguousarray(ber, dtype=np.float32))
        return response.result(timeout_s=self.timeout_s)

    def __call__(self, symbols, erased, ber):
        """The torch-module calling convention (tensors in, logits tensor out) of the in-process
        model half, so `ServedCodec.infer` runs either."""
        import torch

        # Ray hands back a read-only view of its object store: copy before torch takes it
        return torch.from_numpy(self.run(symbols.numpy(), erased.numpy(), ber.numpy()).copy())


@dataclass
class RayBackend:
    """What `connect` set up, for the ready JSON and for shutdown."""

    address: str
    cluster: str          # the GCS address other fronts join (`--ray` of a second front)
    app: str
    replicas: int
    reused: bool
    handle: object
    local: bool

    def describe(self) -> dict:
        return {"engine": "ray", "replicas": self.replicas,
                "ray": {"address": self.address, "cluster": self.cluster, "app": self.app, "reused": self.reused}}

    def close(self) -> None:
        """A local Ray goes with the front; a cluster's application stays for the other fronts.
        (serve.shutdown() waited 30 s for its controller here, so a local Ray is ended with
        ray.shutdown() alone: ~2 s in a script, ~8 s after serving, spent in Ray's driver shutdown.)"""
        if ray is not None and ray.is_initialized():
            ray.shutdown()


def require_ray() -> None:
    if ray is None:
        raise SnnError("--ray needs Ray Serve, which is not installed: pip install 'semanticnn-runtime[cluster]'")


def connect(address: str, replicas: int, bundles: dict[str, bytes], app: str = DEFAULT_APP,
            replica_cpus: float = 1.0, threads: int = 1) -> RayBackend:
    """Start (``local``) or join (``ADDRESS``, e.g. ``ray://head:10001`` or ``head:6379``) a Ray
    cluster, start Serve without its HTTP proxy, and deploy (or reuse) the application."""
    require_ray()
    local = address == "local"
    for name in ("ray", "ray.serve"):  # its INFO lines (app ready, routers) are not ours to print
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        if local:  # address="local": a new Ray even where `ray start` runs one on this host
            ray.init(address="local", include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING,
                     configure_logging=False)
        else:
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING,
                     configure_logging=False)
    except Exception as exc:  # noqa: BLE001 - ConnectionError, ValueError, RuntimeError, ...
        raise SnnError(f"--ray {address}: cannot {'start' if local else 'join'} Ray ({type(exc).__name__}: "
                       f"{str(exc).splitlines()[0] if str(exc) else ''})"[:300]) from None
    try:
        serve.start(proxy_location="Disabled")
        reused = _running_with(app, set(bundles))
        if reused is None:
            cpus = ray.cluster_resources().get("CPU", 0.0)
            if cpus < replicas * replica_cpus:
                raise SnnError(f"the Ray cluster has {cpus:g} CPUs: {replicas} replicas of {replica_cpus:g} CPU "
                               f"do not fit (fewer --replicas, or a smaller --replica-cpus)")
            deployment = serve.deployment(EdgeHalfReplica, name="EdgeHalf", num_replicas=replicas,
                                          ray_actor_options={"num_cpus": replica_cpus},
                                          max_ongoing_requests=2)
            handle = serve.run(deployment.bind(bundles, threads), name=app, route_prefix=None)
            n = replicas
        else:
            handle, n = reused
        cluster = ray.get_runtime_context().gcs_address
        return RayBackend(address, cluster, app, n, reused is not None, handle, local)
    except BaseException:
        if local:
            ray.shutdown()
        raise


def attach(codecs, address: str, replicas: int, app: str = DEFAULT_APP, replica_cpus: float = 1.0,
           threads: int = 1) -> RayBackend:
    """Put every codec of a registry (`edge.codecs.CodecRegistry`) on the deployment: its model
    half becomes a `RayEngine`; the front keeps the codec's metadata (levels, symbols, classes)."""
    from codec.bundle import DEFAULT_BUNDLE

    blobs = {c.fingerprint_hex: Path(DEFAULT_BUNDLE if c.source == "default" else c.source).read_bytes()
             for c in codecs}
    backend = connect(address, replicas, blobs, app, replica_cpus, threads)
    for c in codecs:
        c.engine = RayEngine(backend.handle, c.fingerprint_hex, c.levels)
    return backend


def _running_with(app: str, fingerprints: set[str]):
    """(handle, replicas) of a running application that serves every fingerprint; None when
    there is no such application; SnnError when `app` runs other codecs."""
    status = serve.status().applications.get(app)
    if status is None or str(status.status) not in ("RUNNING", "ApplicationStatus.RUNNING"):
        return None
    handle = serve.get_app_handle(app)
    served = set(handle.fingerprints.remote().result(timeout_s=CALL_TIMEOUT_S))
    if not fingerprints <= served:
        raise SnnError(f"Ray application '{app}' serves codecs {sorted(served)}, not {sorted(fingerprints)}: "
                       f"give another --ray-app name")
    replicas = sum(d.replica_states.get("RUNNING", 0) for d in status.deployments.values())
    return handle, replicas
