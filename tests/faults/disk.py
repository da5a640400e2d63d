"""A real small or read-only file system for store fault tests: a tmpfs mounted by the test.

Mounting needs root; elsewhere the tests that need it are skipped with the reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


def mount_tmpfs(where: Path, options: str) -> str | None:
    """Mount a tmpfs; None when done, else why it cannot be (not root, no mount)."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return "mounting a tmpfs needs root and mount(8)"
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
        capture_output=True,
        text=True,
        check=False,
    )
    return None if done.returncode == 0 else f"cannot mount a tmpfs: {done.stderr.strip()}"


def umount(where: Path) -> None:
    subprocess.run(["umount", "-l", str(where)], capture_output=True, check=False)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 1 MB file system (tmpfs) to fill up; skipped where it cannot be mounted."""
    disk = tmp_path / "disk"
    why = mount_tmpfs(disk, "size=1m")
    if why is not None:
        pytest.skip(why)
    try:
        yield disk
    finally:
        umount(disk)


def fill(disk: Path) -> Path:
    """Write a file until the file system is full; return it (delete it to free the disk)."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_CREAT | os.O_WRONLY, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)
    return filler
