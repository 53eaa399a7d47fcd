"""The optional C fast path of the wire format (codec/wire/_native.c), built by `pip install`.

Everything else is in pyproject.toml. `optional=True`: where no C compiler or Python headers are
found the install still succeeds and codec.wire runs its pure-Python reference (the same results,
tested equal in tests/codec/wire/test_native.py), only slower. With OpenSSL's headers (Debian:
libssl-dev) the module also runs the MIC and keystream on OpenSSL's AES (never a hand-written
one); without them, only the header block's BCH decoding is native.
"""
import os
import sysconfig

from setuptools import Extension, setup


def _has_openssl() -> bool:
    dirs = [sysconfig.get_paths()["include"], "/usr/include", "/usr/local/include"]
    return any(os.path.exists(os.path.join(d, "openssl", "evp.h")) for d in dirs)


openssl = _has_openssl()
setup(ext_modules=[Extension("codec.wire._native", ["codec/wire/_native.c"], optional=True,
                             extra_compile_args=["-O2", "-std=c11"],
                             define_macros=[("SNN_OPENSSL", "1")] if openssl else [],
                             libraries=["crypto"] if openssl else [])])
