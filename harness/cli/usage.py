"""Checks every command makes before it does anything: places to write, and where relative defaults point."""

from __future__ import annotations

import os
import tempfile

from harness.errors import HarnessError
from harness.portable import CHECKOUT

_PACKAGE_PARENT = CHECKOUT


def checkout_root() -> str:
    """The checkout the harness runs from (where matrix.yaml and reports/ live), so that default paths work
    from any directory; the current directory when the harness is an installed package without a checkout."""
    if os.path.isfile(os.path.join(_PACKAGE_PARENT, "matrix.yaml")):
        return _PACKAGE_PARENT
    return os.getcwd()


def check_output_dir(path: str, key: str) -> None:
    """`path` is (or can be made) a folder this process can write into; else one HarnessError."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise HarnessError(f"{path} exists and is not a folder", key=key)
    try:
        os.makedirs(path, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".harness-write-check-", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise HarnessError(f"cannot write into {path}: {exc.strerror or exc}", key=key) from None


def check_output_file(path: str, key: str) -> None:
    """`path` can be written as a file (its folder is writable, and it is not a folder itself)."""
    if os.path.isdir(path):
        raise HarnessError(f"{path} is a folder, not a file", key=key)
    check_output_dir(os.path.dirname(os.path.abspath(path)), key)
    if os.path.exists(path) and not os.access(path, os.W_OK):
        raise HarnessError(f"cannot write {path}: permission denied", key=key)


def check_input_file(path: str, key: str) -> None:
    """`path` is a readable file."""
    if not os.path.exists(path):
        raise HarnessError(f"no such file: {path}", key=key)
    if os.path.isdir(path):
        raise HarnessError(f"{path} is a folder, not a file", key=key)
    if not os.access(path, os.R_OK):
        raise HarnessError(f"cannot read {path}: permission denied", key=key)
