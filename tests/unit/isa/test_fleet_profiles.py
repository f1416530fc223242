"""The simulated fleet: profiles from real cpuinfo, labels as NFD writes them, fleet files."""

from __future__ import annotations

from pathlib import Path

import pytest

from flox_isa.devcluster import fleet
from flox_isa.devcluster.fleet import FleetError, load_fleet, node_manifests, parse_fleet
from flox_isa.isa import names
from flox_isa.isa.catalog import Workload, default_catalog
from flox_isa.isa.features import features_from_labels
from flox_isa.isa.nfd_flags import DEFAULT_LABEL_BLACKLIST
from flox_isa.isa.nodes import node_info
from flox_isa.isa.selection import choose

# family -> best variant for (fp32-inference, int8-inference, bf16-training), per the
# guide and design.md: equal scores go to the variant with fewer required flags.
EXPECTED: dict[str, tuple[str, str, str]] = {
    "m4": ("avx2", "avx2", "avx2"),
    "c5": ("avx512", "avx512", "avx512"),
    "m5": ("avx512", "avx512", "avx512"),
    "m5n": ("avx512", "avx512vnni", "avx512"),
    "m6i": ("avx512", "avx512vnni", "avx512"),
    "m7i": ("avx512", "avx512vnni", "avx512bf16"),
    "c6g": ("armv8.2", "armv8.2", "armv8.2"),
    "c7g": ("armv8.2", "armv8.2", "armv8.2"),  # Graviton3: SVE, no SVE2
    "c8g": ("armv9", "armv9", "armv9"),
}
WORKLOADS: tuple[Workload, ...] = ("fp32-inference", "int8-inference", "bf16-training")


def family(instance_type: str) -> str:
    return instance_type.partition(".")[0]


def one_node(instance_type: str) -> dict[str, object]:
    return node_manifests(parse_fleet(f"nodes: [{{instanceType: {instance_type}}}]"))[0]


@pytest.mark.parametrize("instance_type", sorted(fleet.instance_profiles()))
def test_best_variant_per_workload_from_the_nfd_labels(instance_type: str) -> None:
    node = one_node(instance_type)
    features = node_info(node).features  # what the webhook would read off the Node
    chosen = tuple(choose(default_catalog(), features, w).variant for w in WORKLOADS)
    assert tuple(v.name if v else None for v in chosen) == EXPECTED[family(instance_type)]


def test_every_family_is_covered() -> None:
    families = {family(t) for t in fleet.instance_profiles()}
    assert families == set(EXPECTED)


def test_node_manifest_shape() -> None:
    node = one_node("m6i.xlarge")
    meta = node["metadata"]
    assert isinstance(meta, dict)
    labels = meta["labels"]
    assert meta["name"] == "m6i-xlarge-0"
    assert meta["annotations"] == {"kwok.x-k8s.io/node": "fake"}
    assert labels[names.ARCH_LABEL] == "amd64"
    assert labels["kubernetes.io/os"] == "linux"
    assert labels["kubernetes.io/hostname"] == "m6i-xlarge-0"
    assert labels[names.INSTANCE_TYPE_LABEL] == "m6i.xlarge"
    assert labels["type"] == "kwok"
    assert labels[names.cpuid_label("X86_64_V4")] == "true"
    assert "spec" not in node  # taint-free by default
    assert node["status"] == {
        "capacity": {"cpu": "4", "memory": "16384Mi", "pods": "58"},
        "allocatable": {"cpu": "3920m", "memory": "15391Mi", "pods": "58"},
        "nodeInfo": {"architecture": "amd64", "operatingSystem": "linux"},
    }


def test_no_blacklisted_flag_is_labelled() -> None:
    for node in node_manifests(load_fleet("default")):
        flags = features_from_labels(node["metadata"]["labels"]).flags
        assert not flags & DEFAULT_LABEL_BLACKLIST


def test_eks_style_cpu_reservation() -> None:
    assert [fleet.eks_reserved_cpu_millis(n) for n in (1, 2, 4, 8, 16)] == [60, 70, 80, 90, 110]


def test_named_fleets() -> None:
    assert {"default", "mixed"} <= set(fleet.named_fleets())
    default = node_manifests(load_fleet(None))
    assert len(default) == 18
    assert len({n["metadata"]["name"] for n in default}) == 18


def test_mixed_fleet_carries_extra_labels_and_taints() -> None:
    nodes = {n["metadata"]["name"]: n for n in node_manifests(load_fleet("mixed"))}
    spr = nodes["m7i-2xlarge-0"]
    assert spr["metadata"]["labels"]["workload-class"] == "training"
    assert spr["spec"]["taints"] == [
        {"key": "workload-class", "value": "training", "effect": "PreferNoSchedule"}
    ]


def test_same_type_in_two_groups_gets_distinct_names() -> None:
    text = "nodes: [{instanceType: c7g.xlarge, count: 2}, {instanceType: c7g.xlarge}]"
    assert [n["metadata"]["name"] for n in node_manifests(parse_fleet(text))] == [
        "c7g-xlarge-0", "c7g-xlarge-1", "c7g-xlarge-2",
    ]  # fmt: skip


def test_fleet_file_from_a_path(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text("nodes:\n  - instanceType: c8g.2xlarge\n    count: 3\n", encoding="utf-8")
    assert [g.count for g in load_fleet(str(path)).nodes] == [3]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nodes: [{instanceType: m9.large}]", r"nodes\[0\]\.instanceType: unknown instance"
         r" type 'm9.large'; known: m4.xlarge, .*c8g.2xlarge"),
        ("nodes: [{instanceType: m4.xlarge, count: 0}]", r"nodes\[0\]\.count"),
        ("nodes: []", "nodes: "),
        ("nodes: [{instanceType: m4.xlarge, colour: red}]", r"nodes\[0\]\.colour: unknown"),
        ("nodes: [{instanceType: m4.xlarge, taints: [{key: a, effect: Sometimes}]}]",
         r"nodes\[0\]\.taints\[0\]\.effect"),
        ("nodes: [{instanceType: m4.xlarge, labels: {kubernetes.io/arch: arm64}}]",
         "set by the instance profile"),
        ("[1, 2]", "expected a mapping"),
        ("nodes: [", "not valid YAML"),
    ],
)  # fmt: skip
def test_invalid_fleets_name_the_field(text: str, message: str) -> None:
    with pytest.raises(FleetError, match=message):
        parse_fleet(text, "fleet.yaml")


def test_unknown_fleet_name_lists_the_named_fleets() -> None:
    with pytest.raises(FleetError, match="named fleets: default, mixed"):
        load_fleet("no-such-fleet")
