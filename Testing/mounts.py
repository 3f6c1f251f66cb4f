"""Real file systems that fail the way users' disks do: a nearly full tmpfs and a read-only bind mount. Root
ignores permission bits, so a chmod-ed folder would not reproduce a read-only disk; a mount does. Tests skip (with
the reason) where mounting is not permitted, and every mount is undone."""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path

import pytest


def _mount(*args: str) -> None:
    r = subprocess.run(["mount", *args], capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        pytest.skip(f"mounting is not permitted here ({r.stderr.strip() or r.returncode}); these tests need root")


def _unmount(where: Path) -> None:
    subprocess.run(["umount", str(where)], capture_output=True, timeout=30, check=True)


@contextlib.contextmanager
def nearly_full_disk(where: Path, free_kib: int, size_kib: int = 512):
    """A tmpfs mounted at ``where`` with about ``free_kib`` KiB left to write (a filler file takes the rest)."""
    where.mkdir(parents=True, exist_ok=True)
    _mount("-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", str(where))
    try:
        st = os.statvfs(where)
        (where / "filler").write_bytes(b"\0" * (st.f_bfree * st.f_frsize - free_kib * 1024))
        yield where
    finally:
        _unmount(where)


@contextlib.contextmanager
def read_only_folder(where: Path):
    """``where`` (created empty if missing) made read-only by a read-only bind mount of itself."""
    where.mkdir(parents=True, exist_ok=True)
    _mount("--bind", str(where), str(where))
    try:
        _mount("-o", "remount,ro,bind", str(where))
        yield where
    finally:
        _unmount(where)
