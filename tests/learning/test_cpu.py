"""retain_freed_memory applies glibc's malloc options once, and fails softly elsewhere."""

from __future__ import annotations

import ctypes.util
import sys

import pytest

import learning.cpu
from learning.cpu import retain_freed_memory


@pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="glibc's mallopt is Linux-only"
)
def test_applies_on_glibc_and_repeats() -> None:
    assert retain_freed_memory()
    assert retain_freed_memory()


def test_without_c_library_returns_false(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(learning.cpu, "_applied", False)
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: None)
    assert not retain_freed_memory()


def test_library_without_mallopt_returns_false(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class NoMallopt:
        def __init__(self, name: str) -> None:
            self.name = name

        def __getattr__(self, attribute: str) -> object:
            raise AttributeError(attribute)

    monkeypatch.setattr(learning.cpu, "_applied", False)
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: "libc.so.6")
    monkeypatch.setattr(learning.cpu.ctypes, "CDLL", NoMallopt)
    assert not retain_freed_memory()
