"""Calm re-planning: how a TicketWorker's live replicas move toward its room-aware plan.

The plan (`isa.planning` with a `Room`) is level-based: it follows the free room, the
TicketWorker's own pods not counted, so its own moves never change it. Live replicas
follow it calmly:

- a new TicketWorker, or a change of the fleet it can use (the room-blind plan's
  variants and nodes), takes the plan at once: nothing is moved off a running variant
  for room that is merely missing;
- a scale adds replicas where the plan has room for them (best rank first) and removes
  them where the plan has too many (worst rank first);
- a replica moves from variant A to another B only when A's pods have been
  Unschedulable longer than `unschedulable_seconds` and the plan has room on B now,
  or, B being better ranked, when the plan has seen room on B for that long (so
  replicas move back, and a moment of free room moves nothing);
- moves are rate-limited: at most `max_move_percent` of the replicas (at least 1) per
  `interval_seconds`; with `when-full: wait` nothing moves (the pods wait on purpose).

Pure: the caller keeps the `Memory`. Its clocks live in memory (a new leader starts them
again, so it waits one more interval before it moves anything); its anchor is also
persisted (the TicketWorker's `status.planBasis`), so a new leader applies a fleet change
made during the handover at once, as the old leader would have.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

from flox_isa.isa.placement import DEFAULT_WHEN_FULL, WhenFull

DEFAULT_UNSCHEDULABLE_SECONDS: Final = 300
DEFAULT_INTERVAL_SECONDS: Final = 60
DEFAULT_MAX_MOVE_PERCENT: Final = 25
Why = Literal["unschedulable", "room"]


@dataclass(frozen=True, slots=True)
class Calm:
    unschedulable_seconds: float = DEFAULT_UNSCHEDULABLE_SECONDS
    interval_seconds: float = DEFAULT_INTERVAL_SECONDS
    max_move_percent: int = DEFAULT_MAX_MOVE_PERCENT

    def budget(self, replicas: int) -> int:
        """Replicas that may move in one interval."""
        return max(1, math.floor(replicas * self.max_move_percent / 100))


@dataclass(frozen=True, slots=True)
class Memory:
    """What re-planning remembers between passes of one TicketWorker."""

    anchor: str | None = None  # the room-blind plan's shape last seen (`plan_basis`)
    last_move: float | None = None  # when replicas last moved (None: not since start)
    room_since: Mapping[str, float] = field(default_factory=dict)  # variant -> room seen since
    replicas: Mapping[str, int] | None = None  # the replicas last planned (what was written)


def plan_basis(placement: str, nodes: Mapping[str, int]) -> str:
    """The anchor: the placement and the eligible nodes per variant of the room-blind plan,
    e.g. `best: avx2=8 armv9=6` (a fleet change changes it; the room does not)."""
    return f"{placement}: " + " ".join(f"{name}={count}" for name, count in nodes.items())


@dataclass(frozen=True, slots=True)
class Move:
    source: str
    target: str
    replicas: int
    why: Why
    seconds: float  # how long the source was full (unschedulable) or the target had room


@dataclass(frozen=True, slots=True)
class Replan:
    replicas: dict[str, int]
    moves: tuple[Move, ...]
    memory: Memory


def replan(  # noqa: PLR0917 - the pure function of everything it weighs
    planned: Mapping[str, int],
    current: Mapping[str, int] | None,
    ranked: Sequence[str],
    stuck: Mapping[str, tuple[int, float]],
    memory: Memory,
    anchor: str,
    now: float,
    calm: Calm = Calm(),
    when_full: WhenFull = DEFAULT_WHEN_FULL,
) -> Replan:
    """The replicas per variant to run now (see the module doc).

    `planned`: the room-aware plan (every variant it names, 0 included); `current`: the
    live replicas per variant (None: nothing runs yet; the memory's replicas, when it has
    them, stand for it); `ranked`: variant names best
    first; `stuck`: per variant, (pods Unschedulable longer than the bound, the longest
    such time in seconds); `anchor`: the room-blind plan's `plan_basis`.
    """
    if memory.replicas is not None:
        current = memory.replicas  # ours, even before the Deployments' watch shows it
    if current is None or (memory.anchor is not None and memory.anchor != anchor):
        last = now if memory.last_move is None else memory.last_move
        return Replan(dict(planned), (), Memory(anchor, last, {}, dict(planned)))
    order = [*ranked, *sorted(set(planned) - set(ranked))]
    rank = {name: i for i, name in enumerate(order)}
    result = {name: int(current.get(name, 0)) for name in planned}  # others: no node left
    _rescale(result, planned, sum(planned.values()) - sum(result.values()), rank)
    room_since = {
        name: memory.room_since.get(name, now) for name in planned if planned[name] > result[name]
    }
    last_move = now if memory.last_move is None else memory.last_move
    moves: list[Move] = []
    if when_full != "wait" and now - last_move >= calm.interval_seconds:
        budget = calm.budget(sum(planned.values()))
        moves = _moves(result, planned, rank, stuck, room_since, now, calm, budget)
        if moves:
            last_move = now
            room_since = {
                name: since for name, since in room_since.items() if planned[name] > result[name]
            }
    return Replan(result, tuple(moves), Memory(anchor, last_move, room_since, dict(result)))


def _rescale(
    result: dict[str, int], planned: Mapping[str, int], change: int, rank: Mapping[str, int]
) -> None:
    """Add replicas where the plan wants more (best first), or remove them where it
    wants fewer (worst first), until the total is the plan's."""
    by_rank = sorted(planned, key=lambda n: rank[n])
    if change > 0:
        for name in by_rank:
            k = min(change, max(0, planned[name] - result[name]))
            result[name] += k
            change -= k
        if change > 0:  # never: the plan's deficits add up to at least the change
            result[by_rank[0]] += change
    elif change < 0:
        for name in reversed(by_rank):
            k = min(-change, max(0, result[name] - planned[name]))
            result[name] -= k
            change += k
        for name in reversed(by_rank):  # never, as above
            k = min(-change, result[name])
            result[name] -= k
            change += k


def _moves(  # noqa: PLR0917
    result: dict[str, int],
    planned: Mapping[str, int],
    rank: Mapping[str, int],
    stuck: Mapping[str, tuple[int, float]],
    room_since: Mapping[str, float],
    now: float,
    calm: Calm,
    budget: int,
) -> list[Move]:
    """Move replicas (in `result`) from surplus variants to deficit ones, within `budget`."""
    moves: list[Move] = []
    targets = sorted((n for n in planned if planned[n] > result[n]), key=lambda n: rank[n])
    sources = sorted((n for n in planned if result[n] > planned[n]), key=lambda n: -rank[n])
    stuck_left = {name: stuck.get(name, (0, 0.0))[0] for name in sources}
    for target in targets:
        for source in sources:
            if budget <= 0:
                return moves
            deficit = planned[target] - result[target]
            surplus = result[source] - planned[source]
            if deficit <= 0 or surplus <= 0:
                continue
            seconds = now - room_since.get(target, now)
            why: Why
            if rank[target] < rank[source] and seconds >= calm.unschedulable_seconds:
                count, why = min(deficit, surplus, budget), "room"  # back to a better variant
            elif stuck_left[source] > 0:  # pods that cannot be scheduled, to where there is room
                count, why = min(deficit, surplus, budget, stuck_left[source]), "unschedulable"
                seconds = stuck.get(source, (0, 0.0))[1]
                stuck_left[source] -= count
            else:
                continue
            if count <= 0:
                continue
            result[source] -= count
            result[target] += count
            budget -= count
            moves.append(Move(source, target, count, why, seconds))
    return moves
