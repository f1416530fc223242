"""Daemon processes identified by pid *and* start time, so a recycled pid is never killed."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class ProcessRecord:
    """A process `up` started: enough to find it again, and only it."""

    name: str
    pid: int
    start_ticks: int
    log: str
    health_url: str
    # Its command line: `cluster.restart_component` starts it again exactly so.
    argv: tuple[str, ...] = ()


def start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (/proc/PID/stat field 22)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] == "Z":  # exited, not yet reaped: as good as gone
        _reap(pid)
        return None
    return int(fields[19])


def _reap(pid: int) -> None:
    # Our own children (the pytest fixture starts them in-process) stay zombies until reaped.
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def is_alive(record: ProcessRecord) -> bool:
    return start_ticks(record.pid) == record.start_ticks


def spawn(
    name: str, argv: tuple[str, ...], log: Path, cwd: Path, health_url: str
) -> tuple[ProcessRecord, subprocess.Popen[bytes]]:
    """Start a daemon in its own session (it outlives `up`), output appended to `log`."""
    with log.open("ab") as out:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            start_new_session=True,
        )
    ticks = start_ticks(process.pid)
    record = ProcessRecord(name, process.pid, ticks or 0, str(log), health_url, tuple(argv))
    return record, process


def stop(record: ProcessRecord, grace_seconds: float = 10.0) -> bool:
    """SIGTERM, then SIGKILL after the grace period; False if it was not running."""
    if not is_alive(record):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(record.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_seconds
    while time.monotonic() < deadline:
        if not is_alive(record):
            return True
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(record.pid, signal.SIGKILL)
    while is_alive(record):
        time.sleep(0.05)
    return True


def log_tail(path: Path | str, lines: int = 25) -> str:
    try:
        text = Path(path).read_text(errors="replace")
    except FileNotFoundError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])
