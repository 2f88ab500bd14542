"""Importing any module of the three packages does no work: no files, threads or sockets."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PROBE = """
import importlib, pkgutil, socket, sys, threading
opened = []
real_connect = socket.socket.connect
def guard(self, *args):
    opened.append(args)
    raise OSError("network touched at import time")
socket.socket.connect = guard
names = []
for package in ("config", "metering", "proxy"):
    module = importlib.import_module(package)
    names.append(package)
    for info in pkgutil.walk_packages(module.__path__, package + "."):
        if info.name.endswith("__main__"):
            continue  # running it is its purpose
        importlib.import_module(info.name)
        names.append(info.name)
assert threading.active_count() == 1, threading.enumerate()
assert not opened, opened
print(len(names))
"""


def test_every_module_imports_without_side_effects(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=tmp_path,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert int(result.stdout.strip()) > 40  # every module was really imported
    assert list(tmp_path.iterdir()) == []  # no database, cache or log file appeared
