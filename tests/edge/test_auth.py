"""edge/auth.py: the keyring's peers per device and token buckets (no server needed)."""
from standin import FP_A, FP_B, standin_registry

from codec.wire.crypto import ZERO_KEY
from codec.wire.keys import DeviceKey
from edge.auth import Keyring, TokenBuckets


def test_keyring_peers_by_binding_and_insecure_mode():
    reg = standin_registry()
    keys = {1: DeviceKey(1, bytes(range(16)), None), 2: DeviceKey(2, bytes(16), FP_B),
            3: DeviceKey(3, bytes(16), bytes.fromhex("01020304"))}
    ring = Keyring(reg, keys)
    assert {p.fingerprint for p in ring.peers(1)} == {FP_A, FP_B}        # any served codec
    assert [p.fingerprint for p in ring.peers(2)] == [FP_B]
    assert ring.peers(3)[0].codec is None and ring.unserved == [keys[3]]  # answered UNKNOWN_CODEC
    assert ring.peers(4) == [] and not ring.known(4)
    assert ring.sizes is None   # an unserved codec's length is unknown: no length pre-filter
    insecure = Keyring(reg, None, insecure=True)
    assert all(p.key == ZERO_KEY for p in insecure.peers(999)) and insecure.known(999)
    assert Keyring(reg, {1: keys[1]}).sizes == frozenset({37})


def test_replay_windows_are_per_device_and_an_unseen_id_gets_none():
    from edge.replay_state import ReplayState
    state = ReplayState(None, {1: DeviceKey(1, bytes(16), None)})
    state.window(1).mark(70000)
    assert state.full_counter(1, 70001 & 0xFFFF) == 70001 and state.full_counter(2, 5) == 5
    assert 2 not in state.windows      # an id that never authenticated has no window


def test_token_buckets_limit_and_refill():
    tb = TokenBuckets(rate=10, burst=5, max_keys=2)
    assert all(tb.take("a", now=0.0) for _ in range(5)) and not tb.take("a", now=0.0)
    assert tb.empty("a", now=0.0) and not tb.empty("a", now=0.5)
    assert tb.take("a", now=0.5)
    tb.take("b", now=0.0)
    tb.take("c", now=0.0)              # bounded: "a" is forgotten (LRU)
    assert not tb.empty("a", now=0.0)
    assert TokenBuckets(rate=0, burst=0).take("x")   # 0: no limit
