"""Daemons are found by pid and start time, stopped cleanly, and their state round-trips."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest

from flox_isa.devcluster import cluster, components, processes
from flox_isa.devcluster.cluster import ClusterState


def _sleeper(tmp_path: Path) -> processes.ProcessRecord:
    record, _ = processes.spawn(
        "sleeper",
        (sys.executable, "-c", "import time; print('hi', flush=True); time.sleep(60)"),
        tmp_path / "sleeper.log",
        tmp_path,
        "http://127.0.0.1:1/",
    )
    return record


def test_spawn_and_stop(tmp_path: Path) -> None:
    record = _sleeper(tmp_path)
    assert processes.is_alive(record)
    assert processes.stop(record, grace_seconds=5)
    assert not processes.is_alive(record)
    assert not processes.stop(record)


def test_recycled_pid_is_not_ours(tmp_path: Path) -> None:
    record = _sleeper(tmp_path)
    try:
        impostor = processes.ProcessRecord(
            record.name, record.pid, record.start_ticks + 1, record.log, record.health_url
        )
        assert not processes.is_alive(impostor)
        assert not processes.stop(impostor)
        assert processes.is_alive(record)
    finally:
        processes.stop(record)


def test_log_tail(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text("\n".join(str(i) for i in range(100)))
    assert processes.log_tail(log, 3) == "97\n98\n99"
    assert processes.log_tail(tmp_path / "missing.log") == "(no log)"


def test_state_round_trip_and_down(tmp_path: Path) -> None:
    record = _sleeper(tmp_path)
    state = ClusterState(tmp_path, "v1.34.4", "https://127.0.0.1:1", [record], ["n1"])
    state.save()
    loaded = ClusterState.load(tmp_path)
    assert loaded == state
    assert loaded is not None and loaded.running() == [record]
    with pytest.raises(cluster.AlreadyRunningError):
        cluster.up(tmp_path)
    assert cluster.down(tmp_path, log=lambda _m: None)
    assert not processes.is_alive(record)
    assert ClusterState.load(tmp_path) is None
    assert not cluster.down(tmp_path)


def test_status_without_cluster(tmp_path: Path) -> None:
    assert cluster.status(tmp_path) == (None, [])


def test_failed_start_names_the_component_shows_its_log_and_leaves_nothing_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stand-in control plane: one healthy daemon, then one that crashes."""
    plane = [
        components.Component(
            "sleeper", (sys.executable, "-c", "import time; time.sleep(60)"), "http://ok/"
        ),
        components.Component(
            "crasher",
            (sys.executable, "-c", "print('boom: bad flag', flush=True); raise SystemExit(3)"),
            "http://never/",
        ),
    ]
    monkeypatch.setattr(cluster, "_healthy", lambda url, _context: url == "http://ok/")
    monkeypatch.setattr(cluster, "ensure_binaries", lambda *_a, **_k: tmp_path)
    monkeypatch.setattr(components, "control_plane", lambda *_a: plane)
    directory = tmp_path / "dc"
    messages: list[str] = []
    with pytest.raises(cluster.ComponentFailedError) as failure:
        cluster.up(directory, log=messages.append)
    assert failure.value.component == "crasher"
    assert "exited with code 3" in str(failure.value)
    assert "boom: bad flag" in failure.value.tail
    started = next(m for m in messages if m.startswith("sleeper healthy"))
    sleeper_pid = int(started.split("(pid ")[1].split(")")[0])
    assert processes.start_ticks(sleeper_pid) is None  # stopped (and reaped)
    assert ClusterState.load(directory) is None  # down ran: no state left
    assert (directory / "crasher.log").exists()  # the logs stay for the post-mortem


def test_restart_component_starts_the_same_command_again_in_its_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = _sleeper(tmp_path), dataclasses.replace(_sleeper(tmp_path), name="other")
    state = ClusterState(tmp_path, "v1.34.4", "https://127.0.0.1:1", [first, second])
    state.save()
    monkeypatch.setattr(cluster, "_healthy", lambda _url, _context: True)
    try:
        took = cluster.restart_component(tmp_path, "sleeper", log=lambda _m: None)
        loaded = ClusterState.load(tmp_path)
        assert loaded is not None and took >= 0
        restarted = loaded.processes[0]
        assert restarted.pid != first.pid and restarted.argv == first.argv
        assert processes.is_alive(restarted) and not processes.is_alive(first)
        assert loaded.processes[1] == second  # untouched, and the order kept
    finally:
        cluster.down(tmp_path, log=lambda _m: None)


def test_restart_component_names_what_it_cannot_restart(tmp_path: Path) -> None:
    with pytest.raises(cluster.DevclusterError, match="no devcluster"):
        cluster.restart_component(tmp_path, "kube-apiserver")
    ClusterState(tmp_path, "v1.34.4", "https://127.0.0.1:1", []).save()
    with pytest.raises(cluster.DevclusterError, match="no restartable component 'etcd'"):
        cluster.restart_component(tmp_path, "etcd")
