"""Instructions per call of each ASGI app in process, counted by valgrind's callgrind.

The in-process times (`inprocess`) move by +-15% from one process to the next on these
VMs; an instruction count does not (two runs agreed within 1% here, whatever else the
machine did: the bodies' random uids and the heap's layout are all that differ). So this
is the figure to compare two versions of the hot path by, and to see what share of a
request each part takes (instructions are not time: a tight C loop runs more of them per
nanosecond than the interpreter does):
`floor` (decode the review, answer ours' patch) beside `ours` says what ours costs
beyond reading the review.

Each server is the in-process child (`inprocess`: the same apps, bodies and logging)
under callgrind with instrumentation off until it is set up; per stream it counts two
steady runs, of N and 2N calls (`inprocess._count`), and the difference over N is the
figure. Hash seeds are fixed so that every run hashes alike.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from webhookbench.inprocess import HERE, WARM_UP

# A callgrind dump's trigger and its count of instructions.
DUMP = re.compile(r"^desc: Trigger: Client Request: (\w+)$|^desc: Trigger: dump (\w+)$", re.M)
TOTALS = re.compile(r"^totals: (\d+)", re.M)
Counts = dict[tuple[str, str], float]


def instruction_benchmarks(
    nodes: int, calls: int, *, baseline: Path | None, floor: bool, streams: list[str]
) -> Counts:
    """Instructions per call for each server and stream (bare, floor, ours, quiet, before)."""
    missing = [tool for tool in ("valgrind", "callgrind_control") if shutil.which(tool) is None]
    if missing:
        raise SystemExit(f"--instructions needs {' and '.join(missing)} (Debian package valgrind)")
    code = HERE.parents[2]
    codes = {"bare": code, **({"floor": code} if floor else {}), "ours": code, "quiet": code}
    if baseline is not None:
        codes["before"] = baseline
    print(f"instructions per call, in process (callgrind; repeatable): {nodes} nodes,"
          f" {calls} calls counted per server and stream")  # fmt: skip
    counts: Counts = {}
    for kind, checkout in codes.items():
        print(f"  counting {kind} ...", flush=True)
        counts |= _count_server(kind, checkout, nodes, calls, streams)
    for stream in streams:
        print_counts(counts, list(codes), stream)
    return counts


def print_counts(counts: Counts, kinds: list[str], stream: str) -> None:
    bare = counts[("bare", stream)]
    floor = counts.get(("floor", stream))
    cells = []
    for kind in kinds:
        count = counts[(kind, stream)]
        more = "" if kind == "bare" else f" ({(count - bare) / 1000:+.1f}k)"
        if floor is not None and kind not in ("bare", "floor"):
            more += f" {count / floor:.2f}x floor"
        cells.append(f"{kind} {count / 1000:.1f}k{more}")
    print(f"  {stream:8} instructions per call: " + "   ".join(cells))


def _count_server(kind: str, code: Path, nodes: int, calls: int, streams: list[str]) -> Counts:
    """One child under callgrind, each stream counted in turn (see `inprocess._count`)."""
    bodies = 4 * calls + 3 * WARM_UP + 1  # four runs per stream, never a body twice
    counts: Counts = {}
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "callgrind.out"
        argv = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}",
                f"--log-file={Path(scratch) / 'valgrind.log'}", sys.executable, str(HERE),
                "--kind", kind, "--code", str(code), "--nodes", str(nodes),
                "--streams", ",".join(streams), "--bodies", str(bodies), "--callgrind"]  # fmt: skip
        env = {**os.environ, "PYTHONHASHSEED": "0"}
        with subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True, env=env) as child:  # fmt: skip
            assert child.stdin is not None and child.stdout is not None
            _expect(child, kind, "ready")
            for stream in streams:
                child.stdin.write(f"{stream} {calls}\n")
                child.stdin.flush()
                _expect(child, kind, "dumped")
                one, two = _dumps(Path(scratch))
                counts[(kind, stream)] = (two - one) / calls
            child.stdin.close()
    return counts


def _expect(child: subprocess.Popen[str], kind: str, key: str) -> None:
    assert child.stdout is not None
    line = child.stdout.readline()
    if f'"{key}"' not in line:
        raise RuntimeError(f"callgrind child {kind}: {line.strip() or 'exited'}")


def _dumps(scratch: Path) -> tuple[int, int]:
    """The counts of the last `one` and `two` dumps, and the dump files removed."""
    found: dict[str, int] = {}
    for dump in sorted(scratch.glob("callgrind.out.*"), key=lambda p: int(p.suffix[1:])):
        text = dump.read_text()
        trigger, total = DUMP.search(text), TOTALS.search(text)
        if trigger is not None and total is not None:
            found[trigger.group(1) or trigger.group(2)] = int(total.group(1))
        dump.unlink()
    return found["one"], found["two"]
