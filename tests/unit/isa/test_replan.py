"""Calm re-planning (issue 14, item 3): moves only for stuck pods or lasting room, rate-limited."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from flox_isa.isa.replan import Calm, Memory, plan_basis, replan

RANKED = ["avx512vnni", "armv9", "avx2"]
CALM = Calm(unschedulable_seconds=300, interval_seconds=60, max_move_percent=25)
ANCHOR = plan_basis("best", {"avx512vnni": 2})
T0 = 1_000_000.0


def settled(replicas: dict[str, int], last_move: float = T0 - 3600) -> Memory:
    return Memory(ANCHOR, last_move, {}, replicas)


def test_a_new_ticketworker_takes_the_plan_at_once() -> None:
    planned = {"avx512vnni": 4, "armv9": 16, "avx2": 0}
    result = replan(planned, None, RANKED, {}, Memory(), ANCHOR, T0, CALM)
    assert (result.replicas, result.moves) == (planned, ())


def test_running_replicas_stay_while_their_pods_are_not_stuck() -> None:
    planned = {"avx512vnni": 4, "armv9": 16, "avx2": 0}
    current = {"avx512vnni": 20}
    result = replan(planned, current, RANKED, {}, settled(current), ANCHOR, T0, CALM)
    assert result.replicas == {"avx512vnni": 20, "armv9": 0, "avx2": 0}
    assert result.moves == ()


def test_stuck_pods_move_to_room_at_most_the_rate_limit() -> None:
    planned = {"avx512vnni": 4, "armv9": 16, "avx2": 0}
    current = {"avx512vnni": 20}
    stuck = {"avx512vnni": (16, 320.0)}
    result = replan(planned, current, RANKED, stuck, settled(current), ANCHOR, T0, CALM)
    assert result.replicas == {"avx512vnni": 15, "armv9": 5, "avx2": 0}  # 25% of 20
    (move,) = result.moves
    assert (move.source, move.target, move.replicas, move.why) == (
        "avx512vnni", "armv9", 5, "unschedulable")  # fmt: skip
    # Within the interval nothing more moves; after it, the next batch.
    again = replan(planned, None, RANKED, stuck, result.memory, ANCHOR, T0 + 30, CALM)
    assert (again.replicas, again.moves) == (result.replicas, ())
    later = replan(planned, None, RANKED, stuck, result.memory, ANCHOR, T0 + 61, CALM)
    assert later.replicas == {"avx512vnni": 10, "armv9": 10, "avx2": 0}


def test_replicas_move_back_once_room_has_lasted() -> None:
    planned = {"avx512vnni": 20, "armv9": 0, "avx2": 0}
    current = {"avx512vnni": 4, "armv9": 16}
    first = replan(planned, current, RANKED, {}, settled(current), ANCHOR, T0, CALM)
    assert first.moves == ()  # room just seen
    soon = replan(planned, None, RANKED, {}, first.memory, ANCHOR, T0 + 200, CALM)
    assert soon.moves == ()
    back = replan(planned, None, RANKED, {}, soon.memory, ANCHOR, T0 + 301, CALM)
    assert back.replicas == {"avx512vnni": 9, "armv9": 11, "avx2": 0}
    assert [(m.source, m.target, m.why) for m in back.moves] == [("armv9", "avx512vnni", "room")]


def test_wait_never_moves() -> None:
    planned = {"avx512vnni": 20, "armv9": 0, "avx2": 0}
    current = {"avx512vnni": 4, "armv9": 16}
    memory = Memory(ANCHOR, T0 - 3600, {"avx512vnni": T0 - 3600}, current)
    result = replan(planned, current, RANKED, {}, memory, ANCHOR, T0, CALM, "wait")
    assert result.moves == ()


def test_a_fleet_change_takes_the_new_plan_at_once() -> None:
    planned = {"avx512vnni": 4, "armv9": 16, "avx2": 0}
    current = {"avx512vnni": 20}
    changed = plan_basis("best", {"avx512vnni": 2, "armv9": 4})
    result = replan(planned, current, RANKED, {}, settled(current), changed, T0, CALM)
    assert result.replicas == planned


def test_a_scale_adds_where_there_is_room_and_removes_the_worst_first() -> None:
    current = {"avx512vnni": 4, "armv9": 16}
    up = replan({"avx512vnni": 4, "armv9": 20, "avx2": 2}, current, RANKED, {},
                settled(current), ANCHOR, T0, CALM)  # fmt: skip
    assert up.replicas == {"avx512vnni": 4, "armv9": 20, "avx2": 2}
    down = replan({"avx512vnni": 10, "armv9": 0, "avx2": 0}, current, RANKED, {},
                  settled(current), ANCHOR, T0, CALM)  # fmt: skip
    assert down.replicas == {"avx512vnni": 4, "armv9": 6, "avx2": 0}


counts = st.dictionaries(st.sampled_from(RANKED), st.integers(0, 30), min_size=1)


@settings(max_examples=300, deadline=None)
@given(
    counts,
    counts,
    st.dictionaries(st.sampled_from(RANKED), st.tuples(st.integers(0, 30), st.floats(0, 900))),
    st.integers(1, 100),
    st.floats(0, 3600),
    st.floats(0, 600),
)
def test_moves_never_exceed_the_rate_limit_and_unchanged_inputs_are_stable(  # noqa: PLR0917
    planned_some: dict[str, int],
    current: dict[str, int],
    stuck: dict[str, tuple[int, float]],
    percent: int,
    since_move: float,
    since_room: float,
) -> None:
    planned = {name: planned_some.get(name, 0) for name in RANKED}
    calm = Calm(300, 60, percent)
    memory = Memory(ANCHOR, T0 - since_move, dict.fromkeys(RANKED, T0 - since_room), current)
    result = replan(planned, current, RANKED, stuck, memory, ANCHOR, T0, calm)
    total = sum(planned.values())
    assert sum(result.replicas.values()) == total
    moved = sum(m.replicas for m in result.moves)
    assert moved <= calm.budget(total)
    if since_move < calm.interval_seconds:
        assert moved == 0
    for move in result.moves:
        if move.why == "unschedulable":
            assert move.replicas <= stuck[move.source][0]
    # Once the plan is reached, the same inputs move nothing and change nothing.
    reached = replan(planned, planned, RANKED, stuck, Memory(ANCHOR, T0 - 3600, {}, planned),
                     ANCHOR, T0, calm)  # fmt: skip
    assert (reached.replicas, reached.moves) == (planned, ())
    # And the next pass right after a move moves nothing more.
    after = replan(planned, None, RANKED, stuck, result.memory, ANCHOR, T0 + 1, calm)
    if result.moves:
        assert after.moves == () and after.replicas == result.replicas
