"""Temporary files of atomic writes, named after their writer so that a dead writer's leftovers can go.

Every file the harness writes atomically (records, safetensors, image-cache arrays) is first written to
``.<name>.<host>-<pid>-<token>.tmp`` beside its target, created with the user's umask, and then renamed
into place. A writer killed with -9 leaves its temp file behind; :func:`remove_stale_temps`, called when
a run, a sweep or a cache next starts in that folder, removes those whose writer (on this host) is dead.
"""
from __future__ import annotations

import os
import re
import secrets
import socket
import sys
from pathlib import Path

HOST = re.sub(r"[^A-Za-z0-9]+", "-", socket.gethostname()).strip("-") or "host"
_TEMP = re.compile(r"^\..+\.(?P<host>[A-Za-z0-9-]+)-(?P<pid>\d+)-[0-9a-f]+\.tmp$")


def temp_path(path: Path) -> Path:
    """A fresh temp-file name beside ``path`` naming this host and process."""
    path = Path(path)
    return path.with_name(f".{path.name}.{HOST}-{os.getpid()}-{secrets.token_hex(4)}.tmp")


def file_mode() -> int:
    """The permission bits a new file gets here: 0o666 less the user's umask (read without changing it
    where /proc tells it, as changing it races with other threads)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    except OSError:
        pass
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def process_alive(pid: int) -> bool:
    """True while process ``pid`` exists and is not a zombie (a killed process its parent has not reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if not Path("/proc/self").is_dir():
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def remove_stale_temps(folder: Path) -> list[Path]:
    """Delete the temp files in ``folder`` whose writer on this host is dead; one line says what went."""
    removed, size = [], 0
    for candidate in Path(folder).glob(".*.tmp"):
        match = _TEMP.match(candidate.name)
        if match is None or match["host"] != HOST or process_alive(int(match["pid"])):
            continue
        try:
            size += candidate.stat().st_size
            candidate.unlink()
        except FileNotFoundError:
            continue
        removed.append(candidate)
    if removed:
        print(f"removed {len(removed)} temp file(s) of dead writers ({size / 1e6:.1f} MB) in {folder}",
              file=sys.stderr)
    return removed
