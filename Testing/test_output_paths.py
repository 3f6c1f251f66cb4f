"""Whether a folder can take an output, as the file system says (its block size, the blocks reserved for root, a
file system that reports no sizes, a folder even root may not write in), whether two paths are the same file, and
the one line an OSError becomes. Real file systems (loop-mounted ext2, ramfs) wherever the case can be made here."""

from __future__ import annotations

import collections
import errno
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from LandmarkInitLib.errors import LandmarkFileError
from LandmarkInitLib.io.output_files import (
    check_distinct_paths,
    check_folder_writable,
    free_bytes,
    os_error_message,
    same_file,
)
from mounts import _mount, _unmount

NOBODY = 65534


def exactly(message):
    return "^" + re.escape(message) + "$"


def no_space(folder):
    return f"not enough space in {folder}; free some space or choose another output folder"


def write_until_full(path: Path) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, bytes(1024))
    except OSError as e:
        if e.errno != errno.ENOSPC:
            raise
    finally:
        os.close(fd)


@pytest.fixture
def one_block_left():
    """A 1 MiB ext2 file system with 1 KiB blocks, half of them reserved for root, that root has filled up to its
    last block: f_frsize 1024, f_bfree 1, f_bavail 0. Mounted outside pytest's private tmp folder, so that another
    user can reach it."""
    if os.geteuid() != 0 or not shutil.which("mkfs.ext2"):
        pytest.skip("needs root and mkfs.ext2")
    base = Path(tempfile.mkdtemp(prefix="landmarkinit-ext2-"))
    try:
        base.chmod(0o755)
        image, disk = base / "ext2.img", base / "disk"
        with image.open("wb") as f:
            f.truncate(1024 * 1024)
        subprocess.run(
            ["mkfs.ext2", "-q", "-F", "-b", "1024", "-m", "50", "-N", "32", str(image)], check=True, capture_output=True
        )
        disk.mkdir()
        _mount("-o", "loop", str(image), str(disk))
        try:
            (disk / "spare").write_bytes(bytes(1024))
            write_until_full(disk / "filler")
            # the filler's last block may have needed an indirect block too: small files take what is left
            for i in range(8):
                write_until_full(disk / f"pad{i}")
            (disk / "spare").unlink()
            yield disk
        finally:
            _unmount(disk)
    finally:
        shutil.rmtree(base)


def test_root_may_write_the_last_block_reserved_for_it(one_block_left):
    disk = one_block_left
    st = os.statvfs(disk)
    assert (st.f_frsize, st.f_bfree, st.f_bavail) == (1024, 1, 0)  # the state this test is about
    # root counts the reserved blocks, in units of this file system's 1 KiB blocks: exactly one block is enough
    assert free_bytes(disk) == 1024
    assert check_folder_writable(disk) == disk
    (disk / "last.json").write_bytes(bytes(1024))  # which is true: root writes it
    with pytest.raises(LandmarkFileError, match=exactly(no_space(disk))):
        check_folder_writable(disk)
    with pytest.raises(OSError) as full:
        (disk / "more.json").write_bytes(bytes(1024))
    assert full.value.errno == errno.ENOSPC


def test_other_users_may_not_write_into_the_blocks_reserved_for_root(one_block_left):
    disk = one_block_left
    os.seteuid(NOBODY)  # the effective user is what the kernel's reserve is about; the real one stays root
    try:
        free = free_bytes(disk)
        try:
            check_folder_writable(disk)
            refused = None
        except LandmarkFileError as e:
            refused = str(e)
    finally:
        os.seteuid(0)
    assert free == 0
    assert refused == no_space(disk)


def test_a_file_system_that_reports_no_sizes_is_not_taken_for_full(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root to mount")
    where = tmp_path / "ramfs"
    where.mkdir()
    _mount("-t", "ramfs", "ramfs", str(where))
    try:
        assert os.statvfs(where).f_blocks == 0  # ramfs reports no sizes at all (as some FUSE file systems do)
        assert free_bytes(where) == sys.maxsize
        assert check_folder_writable(where) == where
        (where / "report.json").write_text("{}")  # and it is indeed writable
    finally:
        _unmount(where)


def test_without_statvfs_one_4_kib_cluster_must_be_free(tmp_path, monkeypatch):
    """Windows has no os.statvfs: the free space is shutil.disk_usage's, and one 4 KiB cluster (NTFS's default) is
    the least a file takes. This machine cannot be Windows, so statvfs is taken away and disk_usage answers as
    Windows would for a disk with ``left`` bytes free."""
    asked, left = [], 4096

    def disk_usage(path):
        asked.append(Path(path))
        return collections.namedtuple("usage", "total used free")(1 << 30, (1 << 30) - left, left)

    monkeypatch.delattr(os, "statvfs")
    monkeypatch.setattr(shutil, "disk_usage", disk_usage)
    assert free_bytes(tmp_path) == 4096
    assert check_folder_writable(tmp_path) == tmp_path
    left = 4095
    with pytest.raises(LandmarkFileError, match=exactly(no_space(tmp_path))):
        check_folder_writable(tmp_path)
    assert asked and set(asked) == {tmp_path}


def test_a_folder_even_root_may_not_write_in_is_refused(tmp_path):
    """An immutable folder: root bypasses permission bits, not this (os.access says so, for root too)."""
    folder = tmp_path / "locked"
    folder.mkdir()
    if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not permitted here")
    try:
        with pytest.raises(PermissionError):
            (folder / "report.json").write_text("{}")  # the OS refuses it
        with pytest.raises(LandmarkFileError, match=exactly(f"cannot write in folder {folder}: Permission denied")):
            check_folder_writable(folder)
        with pytest.raises(
            LandmarkFileError, match=exactly(f"cannot create folder {folder / 'a'} in {folder}: Permission denied")
        ):
            check_folder_writable(folder / "a")
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


def test_os_errors_become_the_file_and_the_reason(tmp_path):
    missing = tmp_path / "missing"
    with pytest.raises(OSError) as opened:
        os.open(missing / "a.json", os.O_RDONLY)
    assert os_error_message(opened.value) == f"{missing / 'a.json'}: No such file or directory"
    # the file being written is named instead of the error's own (a temporary name)
    assert os_error_message(opened.value, tmp_path / "b.json") == f"{tmp_path / 'b.json'}: No such file or directory"
    with pytest.raises(OSError) as renamed:
        os.rename(missing, tmp_path / "b")
    assert os_error_message(renamed.value) == f"{missing} -> {tmp_path / 'b'}: No such file or directory"
    fd = os.open(tmp_path, os.O_RDONLY)
    try:
        with pytest.raises(OSError) as read:
            os.read(fd, 1)
    finally:
        os.close(fd)
    assert read.value.filename is None and os_error_message(read.value) == "Is a directory"


def test_a_full_disk_names_the_folder_or_else_the_output_folder(tmp_path):
    fd = os.open("/dev/full", os.O_WRONLY)  # a write to it fails as on a full disk, naming no file
    try:
        with pytest.raises(OSError) as full:
            os.write(fd, b"{}")
    finally:
        os.close(fd)
    assert full.value.errno == errno.ENOSPC and full.value.filename is None
    assert os_error_message(full.value) == no_space("the output folder")
    assert os_error_message(full.value, tmp_path / "out" / "a.json") == no_space(tmp_path / "out")


def test_errors_without_an_os_reason_give_their_first_line_or_their_kind():
    # as libraries raise them: OSError("text") has no errno and no strerror
    assert os_error_message(OSError("the device went away\nretry later")) == "the device went away"
    assert os_error_message(OSError("the device went away"), "a.json") == "a.json: the device went away"
    assert os_error_message(PermissionError()) == "PermissionError"
    assert os_error_message(OSError(), "a.json") == "a.json: OSError"


def test_a_symlink_loop_is_the_same_file_as_itself_and_no_other(tmp_path):
    """A loop cannot be resolved (Python 3.11 raises RuntimeError): its path is compared as given."""
    loop, other = tmp_path / "loop", tmp_path / "other"
    loop.symlink_to("loop")
    other.symlink_to("other")
    assert same_file(loop, str(loop))
    assert not same_file(loop, other)
    with pytest.raises(
        LandmarkFileError, match=exactly(f"--output and --report are the same file ({loop}); give them different names")
    ):
        check_distinct_paths({}, {"--output": loop, "--report": loop})
    check_distinct_paths({"--moving-landmarks": other}, {"--output": loop})
