"""edge/replies.py builds exactly the bytes codec.frame builds."""
import random

from codec.frame import ErrorCode, encode_error, encode_reply, parse_frame
from edge.replies import ReplyEncoder


def test_byte_identical_to_codec_frame():
    enc = ReplyEncoder()
    rnd = random.Random(0)
    for _ in range(500):
        fp = bytes(rnd.randrange(256) for _ in range(4))
        ids = (rnd.randrange(65536), rnd.randrange(65536))
        args = (fp, *ids, rnd.randrange(256), rnd.random(), rnd.random() * 0.8)
        assert enc.reply(*args) == encode_reply(*args)
        eargs = (fp, *ids, rnd.choice(list(ErrorCode)), "é" * rnd.randrange(150))
        assert enc.error(*eargs) == encode_error(*eargs)
    r = parse_frame(enc.reply(b"abcd", 7, 513, 4, 0.93, 0.0123)).reply()
    assert r.label == 4 and abs(r.ber - 0.0123) < 1e-6
