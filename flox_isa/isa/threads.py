"""Thread counts that match a container's CPUs (issue 18): the one rule, pure.

PyTorch sizes its intra-op pool from `OMP_NUM_THREADS`, then `MKL_NUM_THREADS`, else the
host's physical cores (not the container's quota or cpuset), and the public per-ISA builds
use OpenBLAS: so a 2-CPU pod on a 64-core node starts 64 threads and is throttled. The
webhook (at admission) and the operator (in rendered Deployments) both call `plan`:

- a container with a CPU limit gets floor(limit), at least 1 (rounding up puts 2 threads
  on 1.5 CPUs of quota; automaxprocs floors too); in a Guaranteed pod an integer CPU is
  the cpuset the static CPU manager gives it, the same number;
- without a limit, floor(request), at least 1: a floor, since it may use more when the
  node is idle;
- neither: nothing is set (the pod says nothing about its CPUs);
- a container that sets any of the variables keeps its own, and one with `envFrom` is
  left alone (what a ConfigMap or Secret sets cannot be seen at admission, and an `env`
  entry would override it) unless `isa.flox.dev/threads` gives a number;
- `isa.flox.dev/threads: "off"` sets nothing; a number sets that number.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final, Literal, NamedTuple

from flox_isa.isa import names
from flox_isa.isa.inputs import InvalidInputError
from flox_isa.isa.quantity import quantity_or_none

THREAD_VARIABLES: Final = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
THREADS_OFF: Final = "off"
MAX_THREADS: Final = 1024
THREADS_COUNT: Final = "^([1-9][0-9]{0,2}|10[01][0-9]|102[0-4])$"  # 1..MAX_THREADS (for CEL)
# The reason annotation's part about threads starts with this (see `note_of`).
NOTE_PREFIX: Final = "threads: "

Override = int | Literal["off"] | None


class ContainerCpu(NamedTuple):
    """What the rule reads of one container (hashable: the webhook remembers by it).

    A NamedTuple, not a frozen dataclass: the webhook builds one per container of every
    new pod, and a frozen dataclass's `__init__` costs ~5x as much."""

    name: str
    sets_threads: bool  # its env names one of THREAD_VARIABLES
    env_from: bool
    cpu_limit: str | None
    cpu_request: str | None
    memory_limit: str | None = None
    memory_request: str | None = None
    has_env: bool = False  # an `env` list to append to (else the patch adds it whole)


@dataclass(frozen=True, slots=True)
class Setting:
    """The thread count for container `index` of the pod (None: nothing set), and why."""

    index: int
    name: str
    threads: int | None
    why: str
    has_env: bool = False


def parse_override(value: str | None) -> Override:
    """`isa.flox.dev/threads`: None (absent), "off", or a count; InvalidInputError otherwise."""
    if value is None:
        return None
    text = value  # as written: the CRD's CEL rule does not strip either
    if text == THREADS_OFF:
        return THREADS_OFF
    if re.fullmatch(THREADS_COUNT, text):
        return int(text)
    raise InvalidInputError(
        f"annotation {names.THREADS_ANNOTATION}: {value!r} is not allowed;"
        f' expected "{THREADS_OFF}" or a thread count from 1 to {MAX_THREADS}'
    )


def container_cpu(container: Mapping[str, Any]) -> ContainerCpu:
    """The rule's view of a core/v1 Container given as plain data (API field names)."""
    env = container.get("env") or ()
    resources = _mapping(container.get("resources"))
    limits, requests = _mapping(resources.get("limits")), _mapping(resources.get("requests"))
    return ContainerCpu(
        name=str(container.get("name") or ""),
        sets_threads=any(isinstance(e, Mapping) and e.get("name") in THREAD_VARIABLES for e in env),
        env_from=bool(container.get("envFrom")),
        cpu_limit=quantity_text(limits.get("cpu")),
        cpu_request=quantity_text(requests.get("cpu")),
        memory_limit=quantity_text(limits.get("memory")),
        memory_request=quantity_text(requests.get("memory")),
        has_env=bool(env),
    )


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def quantity_text(value: object) -> str | None:
    """A quantity as text (files may hold numbers), None when absent."""
    return None if value is None else str(value)


def plan(
    containers: Sequence[ContainerCpu],
    init_containers: Sequence[ContainerCpu] = (),
    override: Override = None,
) -> tuple[Setting, ...]:
    """A setting per container (app containers only: init containers run before them)."""
    if override == THREADS_OFF:
        return ()
    guaranteed = is_guaranteed([*containers, *init_containers])
    return tuple(
        _setting(i, c, override if isinstance(override, int) else None, guaranteed)
        for i, c in enumerate(containers)
    )


def _setting(index: int, c: ContainerCpu, count: int | None, guaranteed: bool) -> Setting:
    threads, why = _threads(c, count, guaranteed)
    return Setting(index, c.name, threads, why, c.has_env)


def _threads(c: ContainerCpu, count: int | None, guaranteed: bool) -> tuple[int | None, str]:
    """(the thread count, None for none, and why) for one container."""
    if c.sets_threads:
        return None, "keeps its own"
    if c.env_from and count is None:
        return None, f"not set (envFrom may set them; {_how_to_set()})"
    if count is not None:
        return count, names.THREADS_ANNOTATION
    limit = _cpu(c, "limits", c.cpu_limit)
    if limit is not None and limit > 0:
        threads = max(1, math.floor(limit))
        if guaranteed and limit == threads:
            return threads, f"exclusive CPUs: cpuset of {threads}"
        return threads, f"floor of CPU limit {c.cpu_limit}"
    request = _cpu(c, "requests", c.cpu_request)
    if request is not None and request > 0:
        return max(1, math.floor(request)), f"floor of CPU request {c.cpu_request}, no limit"
    return None, "not set (no CPU request or limit)"


def _how_to_set() -> str:
    return f"{names.THREADS_ANNOTATION}: N sets them"


def _cpu(c: ContainerCpu, where: str, value: str | None) -> Decimal | None:
    if value is None:
        return None
    parsed = quantity_or_none(value)
    if parsed is None:
        raise InvalidInputError(
            f"container {c.name}: resources.{where}.cpu: {value!r} is not a Kubernetes quantity"
        )
    return parsed


def is_guaranteed(containers: Sequence[ContainerCpu]) -> bool:
    """Guaranteed QoS: every container has CPU and memory limits, and requests equal them
    (an absent request defaults to the limit)."""
    if not containers:
        return False
    for c in containers:
        for limit, request in ((c.cpu_limit, c.cpu_request), (c.memory_limit, c.memory_request)):
            if limit is None:
                return False
            if request is not None and quantity_or_none(request) != quantity_or_none(limit):
                return False
    return True


def env_entries(threads: int) -> list[dict[str, str]]:
    """The `env` entries that set every thread variable to `threads`."""
    return [{"name": name, "value": str(threads)} for name in THREAD_VARIABLES]


def note_of(settings: Sequence[Setting], override: Override = None) -> str:
    """What was set, for the reason annotation: `threads: worker=2 (floor of CPU limit 2500m)`."""
    if override == THREADS_OFF:
        return f"{NOTE_PREFIX}off ({names.THREADS_ANNOTATION})"
    if all(s.threads is None for s in settings):
        return ""  # nothing was set: the reason says nothing about threads
    parts = [
        f"{s.name}={s.threads} ({s.why})" if s.threads is not None else f"{s.name} {s.why}"
        for s in settings
    ]
    return NOTE_PREFIX + "OMP/MKL/OPENBLAS_NUM_THREADS " + ", ".join(parts)


def with_note(message: str, note: str) -> str:
    """`message`, then `note` after a "; " (the reason annotation's format)."""
    return f"{message}; {note}" if note else message


def carried_note(metadata: Mapping[str, Any]) -> str:
    """The threads note of a pod's reason annotation (kept when the placement controller
    replaces the reason: the env it describes cannot change once the pod exists)."""
    reason = (metadata.get("annotations") or {}).get(names.REASON_ANNOTATION)
    if not isinstance(reason, str):
        return ""
    at = reason.find("; " + NOTE_PREFIX)
    return reason[at + 2 :] if at >= 0 else ""
