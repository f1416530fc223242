"""Every file reader (issue 15): typed validation, one-line errors naming file, object and
field, exit 2, never a traceback; multi-document YAML, byte-order marks, depth limits."""

from __future__ import annotations

import json
import traceback
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flox_isa.cli import EXIT_INPUT, main
from flox_isa.devcluster.fleet import FleetError, parse_fleet
from flox_isa.files import InputError, load_catalog
from flox_isa.isa.catalog import catalog_to_yaml, default_catalog
from tests.unit.webhook.test_decision import DATA
from tests.unit.webhook.test_fuzz import _paths, json_values

NODES = str(DATA / "nodes-default-fleet.yaml")
POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {
        "name": "p",
        "labels": {"isa.flox.dev/inject": "true"},
        "annotations": {"flox.dev/environment": "acme/x"},
    },
    "spec": {"containers": [{"name": "c"}]},
}
NODE = {
    "apiVersion": "v1",
    "kind": "Node",
    "metadata": {"name": "n1", "labels": {"kubernetes.io/arch": "amd64"}},
    "spec": {"taints": [{"key": "k", "value": "v", "effect": "NoSchedule"}]},
    "status": {
        "allocatable": {"cpu": "4"},
        "conditions": [{"type": "Ready", "status": "True"}],
    },
}


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_line_error(err: str, *mentions: str) -> None:
    assert err.startswith("flox-isa: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    for text in mentions:
        assert text in err, (text, err)


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def deep(levels: int, flow: bool = True) -> str:
    return "[" * levels + "]" * levels if flow else "".join(f"{' ' * i}- \n" for i in range(levels))


# --- nodes files -----------------------------------------------------------------------------


def _node(**changes: Any) -> dict[str, Any]:
    node: dict[str, Any] = json.loads(json.dumps(NODE))
    for path, value in changes.items():
        *parents, last = path.split("__")
        target = node
        for part in parents:
            target = target[part]
        target[last] = value
    return node


@pytest.mark.parametrize(
    ("document", "mentions"),
    [
        (_node(metadata__labels=["a"]), ["node 'n1'", "metadata.labels: expected a mapping"]),
        (_node(metadata__name=7), ["metadata.name: expected a string, got int 7"]),
        (_node(metadata__labels={1: "x"}), ["node 'n1'", "metadata.labels (key 1)"]),
        (_node(metadata__labels={"a": 1}), ["metadata.labels.a: expected a string"]),
        (_node(metadata__labels={"a\nb": 1}), ["metadata.labels.'a\\nb': expected a string"]),
        (_node(spec__taints="none"), ["spec.taints: expected a list"]),
        (_node(spec__taints=["x"]), ["spec.taints.0: expected a mapping"]),
        (_node(status__conditions="Ready"), ["status.conditions: expected a list"]),
        (_node(status__allocatable=[1]), ["status.allocatable: expected a mapping"]),
        (_node(metadata="n1"), ["metadata: expected a mapping"]),
        ({"kind": "List", "items": 5}, ["items: expected a list of Nodes, got int 5"]),
        ({"kind": "List", "items": [NODE, 3]}, ["items[1]: expected a Node"]),
        ({"kind": "List", "items": [_node(spec__unschedulable="no")]}, ["items[0]", "spec."]),
        ({"kind": "Pod"}, ["kind: expected Node, NodeList or List, got 'Pod'"]),
    ],
)
@pytest.mark.parametrize("command", ["nodes", "pod"])
def test_malformed_nodes_exit_2_naming_node_and_field(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    document: Any,
    mentions: list[str],
    command: str,
) -> None:
    # yaml, not json: a non-string key is written as such.
    nodes = write(tmp_path, "nodes.yaml", yaml.safe_dump(document))
    if command == "nodes":
        argv = ["explain", "nodes", "--nodes", nodes]
    else:
        pod = write(tmp_path, "pod.json", json.dumps(POD))
        argv = ["explain", "pod", "--pod", pod, "--nodes", nodes]
    code, _, err = run(capsys, *argv)
    assert code == EXIT_INPUT
    one_line_error(err, f"nodes file {nodes!r}", *mentions)


def test_nodes_may_come_as_several_documents_with_a_bom(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    other = _node(metadata__name="n2")
    text = "\ufeff" + yaml.safe_dump(NODE) + "---\n" + yaml.safe_dump(other) + "---\n"
    code, out, _ = run(
        capsys, "explain", "nodes", "--nodes", write(tmp_path, "n.yaml", text), "--output", "json"
    )
    assert code == 0
    assert [row["name"] for row in json.loads(out)] == ["n1", "n2"]


# --- pod files -------------------------------------------------------------------------------

DEPLOYMENT = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "web"},
    "spec": {"template": {k: POD[k] for k in ("metadata", "spec")}},
}
SERVICE = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}}


def _stream(*documents: Any, trailing: bool = False) -> str:
    text = "---\n".join(yaml.safe_dump(d) for d in documents)
    return text + ("---\n" if trailing else "")


def test_a_deployment_with_its_service_and_a_trailing_separator(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    pod = write(tmp_path, "app.yaml", _stream(SERVICE, DEPLOYMENT, trailing=True))
    code, out, _ = run(capsys, "explain", "pod", "--pod", pod, "--nodes", NODES)
    assert code == 0, out
    assert out.startswith("patched (auto)")


@pytest.mark.parametrize(
    ("text", "mentions"),
    [
        (
            _stream(DEPLOYMENT, {**DEPLOYMENT, "metadata": {"name": "api"}}),
            ["holds 2 workloads (Deployment web, Deployment api)"],
        ),
        (_stream(SERVICE, {"kind": "ConfigMap"}), ["holds no workload (Service web, ConfigMap)"]),
        ("---\n---\n", ["holds no workload (no document); expected one of CronJob"]),
        (json.dumps({**POD, "metadata": ["p"]}), ["metadata", "valid"]),
        (json.dumps({**POD, "metadata": {"namespace": 3}}), ["metadata.namespace"]),
        (json.dumps({"kind": "Deployment", "spec": {"template": 5}}), ["spec.template"]),
        (json.dumps({**POD, "spec": {"tolerations": "all"}}), ["spec.tolerations"]),
        (deep(400), ["nested too deeply"]),
        (deep(400, flow=False), ["nested too deeply"]),
        ("kind: [", ["is not valid YAML or JSON"]),
    ],
)
def test_malformed_pod_files_exit_2_naming_the_field(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, text: str, mentions: list[str]
) -> None:
    pod = write(tmp_path, "pod.yaml", text)
    code, _, err = run(capsys, "explain", "pod", "--pod", pod, "--nodes", NODES)
    assert code == EXIT_INPUT
    one_line_error(err, f"pod file {pod!r}", *mentions)


# --- catalogs --------------------------------------------------------------------------------

CATALOG_YAML = catalog_to_yaml(default_catalog())


@pytest.mark.parametrize(
    ("text", "mentions"),
    [
        (yaml.safe_dump({"catalog.yaml": "variants: [unclosed"}), ["catalog.yaml is not valid"]),
        (
            yaml.safe_dump({"kind": "ConfigMap", "data": {"catalog.yaml": "a: ["}}),
            ["catalog.yaml is not valid YAML"],
        ),
        (yaml.safe_dump({"kind": "ConfigMap", "data": {}}), ["data.catalog.yaml is missing"]),
        (yaml.safe_dump({"catalog.yaml": 5}), ["catalog.yaml must be a string"]),
        (deep(400), ["nested too deeply"]),
        ("variants:\n" + deep(300, flow=False), ["nested too deeply"]),
        (CATALOG_YAML + "---\n" + CATALOG_YAML, ["holds 2 YAML documents; expected one"]),
        ("variants: 5", ["variants"]),
        ('"\\n": 1', ["catalog: '\\n': unknown field"]),
    ],
)
def test_malformed_catalogs_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, text: str, mentions: list[str]
) -> None:
    catalog = write(tmp_path, "catalog.yaml", text)
    with pytest.raises(InputError) as error:
        load_catalog(catalog)
    assert "\n" not in str(error.value)
    code, _, err = run(capsys, "explain", "nodes", "--nodes", NODES, "--catalog", catalog)
    assert code == EXIT_INPUT
    one_line_error(err, catalog, *mentions)


def test_a_whole_configmap_and_a_bom_are_read(tmp_path: Path) -> None:
    configmap = {"kind": "ConfigMap", "data": {"catalog.yaml": "\ufeff" + CATALOG_YAML}}
    assert load_catalog(write(tmp_path, "cm.yaml", yaml.safe_dump(configmap))) == (
        default_catalog()
    )
    assert load_catalog(write(tmp_path, "c.yaml", "\ufeff" + CATALOG_YAML)) == default_catalog()


# --- cpuinfo and fleet files -----------------------------------------------------------------


def test_a_bom_before_the_flags_line_is_read(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    cpuinfo = write(tmp_path, "cpuinfo", "\ufeffflags\t: avx2 fma sse4_2\n")
    code, out, _ = run(capsys, "detect", "--cpuinfo", cpuinfo, "--output", "json")
    assert code == 0
    assert json.loads(out)["variant"] == "avx2"


def test_a_bad_cpuinfo_names_the_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    cpuinfo = write(tmp_path, "cpuinfo", "processor: 0\n")
    code, _, err = run(capsys, "detect", "--cpuinfo", cpuinfo)
    assert code == EXIT_INPUT
    one_line_error(err, f"cpuinfo {cpuinfo!r}", "no 'flags'")


@pytest.mark.parametrize(
    ("text", "mentions"),
    [
        ("nodes: 5", ["nodes"]),
        ("nodes: [{instanceType: m4.xlarge, labels: [a]}]", ["nodes[0].labels"]),
        ("nodes: [{instanceType: 5}]", ["nodes[0].instanceType"]),
        ('"\\n": 1', ["'\\n': unknown field"]),
        (deep(400), ["nested too deeply"]),
        ("nodes: [\n", ["not valid YAML"]),
        ("nodes: [{instanceType: m4.xlarge}]\n---\nnodes: []\n", ["holds 2 YAML documents"]),
    ],
)
def test_malformed_fleet_files_say_which_field(text: str, mentions: list[str]) -> None:
    with pytest.raises(FleetError) as error:
        parse_fleet(text, "fleet.yaml")
    message = str(error.value)
    assert message.startswith("fleet.yaml: ") and "\n" not in message
    for text_ in mentions:
        assert text_ in message


# --- random values of the wrong type, into every reader ----------------------------------------


def _replaced(document: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    copy = json.loads(json.dumps(document))
    target = copy
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    return copy


CATALOG_DATA = yaml.safe_load(CATALOG_YAML)
FLEET_DATA = {"nodes": [{"instanceType": "m4.xlarge", "count": 1, "labels": {"a": "b"}}]}
NODES_DATA = {"kind": "List", "items": [NODE]}
TARGETS = {"pod": POD, "nodes": NODES_DATA, "catalog": CATALOG_DATA, "fleet": FLEET_DATA}


@settings(
    max_examples=500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.sampled_from(sorted(TARGETS)), st.data(), json_values)
def test_random_wrong_values_never_raise_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], target: str, data: Any, value: Any
) -> None:
    base = TARGETS[target]
    path = data.draw(st.sampled_from(_paths(base)))
    document = _replaced(base, path, value)
    text = json.dumps(document) if data.draw(st.booleans()) else yaml.safe_dump(document)
    if target == "fleet":
        try:
            parse_fleet(text, "fleet.yaml")
        except FleetError as exc:
            assert "\n" not in str(exc)
        return
    file = write(tmp_path, f"{target}.yaml", text)
    nodes = write(tmp_path, "n.json", json.dumps(NODES_DATA))  # small: many examples
    argv = {
        "pod": ["explain", "pod", "--pod", file, "--nodes", nodes],
        "nodes": ["explain", "pod", "--pod", write(tmp_path, "p.json", json.dumps(POD)),
                  "--nodes", file],
        "catalog": ["explain", "nodes", "--nodes", nodes, "--catalog", file],
    }[target]  # fmt: skip
    try:
        code = main(argv)
    except Exception:  # the point: report any exception with its input
        pytest.fail(f"{target} {path} = {value!r}: {traceback.format_exc()}")
    err = capsys.readouterr().err
    assert code in (0, 1, EXIT_INPUT), code
    if code == EXIT_INPUT:
        one_line_error(err)


# --- explain pod: nodes that are not Ready ------------------------------------------------------


def test_explain_pod_says_which_nodes_are_not_ready_apart_from_constraints(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    no_condition = _node(metadata__name="n2", status={"allocatable": {"cpu": "4"}})
    not_ready = _node(
        metadata__name="n3", status__conditions=[{"type": "Ready", "status": "False"}]
    )
    nodes = write(
        tmp_path, "n.json", json.dumps({"kind": "List", "items": [no_condition, not_ready]})
    )
    pod = write(tmp_path, "p.json", json.dumps(POD))
    code, out, _ = run(capsys, "explain", "pod", "--pod", pod, "--nodes", nodes, "--output", "json")
    assert code == 0
    warnings = json.loads(out)["warnings"]
    assert (
        "nodes: 2 of 2 are not Ready: 1 NotReady (n3); 1 without a Ready condition in"
        " status.conditions (n2); they are never eligible, whatever the pod's constraints"
    ) in warnings
    ready = write(tmp_path, "ready.json", json.dumps(NODE))
    code, out, _ = run(capsys, "explain", "pod", "--pod", pod, "--nodes", ready, "--output", "json")
    assert not any(w.startswith("nodes:") for w in json.loads(out)["warnings"])


def test_a_lone_surrogate_escape_is_a_clean_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Found by the hypothesis test above: pydantic cannot encode such a string."""
    catalog = tmp_path / "catalog.json"
    catalog.write_text('{"variants": [{"name": "\\ud800", "arch": "amd64"}]}')
    nodes = tmp_path / "nodes.json"
    nodes.write_text('{"kind": "NodeList", "items": []}')
    code = main(["explain", "nodes", "--nodes", str(nodes), "--catalog", str(catalog)])
    err = capsys.readouterr().err
    assert code == EXIT_INPUT
    assert "not valid Unicode" in err and "Traceback" not in err
