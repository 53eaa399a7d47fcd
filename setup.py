"""The optional C fast path of the wire format (codec/wire/_native.c), built by `pip install`.

Everything else is in pyproject.toml. `optional=True`: where no C compiler or Python headers are
found the install still succeeds and codec.wire runs its pure-Python reference (the same results,
tested equal in tests/codec/wire/test_native.py), only slower on damaged and garbage frames.
"""
from setuptools import Extension, setup

setup(ext_modules=[Extension("codec.wire._native", ["codec/wire/_native.c"], optional=True,
                             extra_compile_args=["-O2", "-std=c11"])])
