"""The simulated fleet: AWS instance profiles built from real /proc/cpuinfo texts.

Each instance type names a cpuinfo file (package data under profiles/, each citing
its public source); its node labels are what a default NFD would write for that CPU
(flox_isa.isa.nfd.nfd_labels). Fleets are YAML: `nodes: [{instanceType, count,
labels, taints}]`; "default" and "mixed" ship as package data.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from flox_isa.isa import names
from flox_isa.isa.cpuinfo import features_from_cpuinfo
from flox_isa.isa.features import Features
from flox_isa.isa.nfd import nfd_labels
from flox_isa.isa.yamltext import YamlTextError, field_name, load_one

_PROFILES = "flox_isa.devcluster.profiles"
DEFAULT_FLEET = "default"
KWOK_ANNOTATION = "kwok.x-k8s.io/node"
# Labels the profile owns: a fleet file may not contradict the CPU it simulates.
_RESERVED_PREFIXES = ("feature.node.kubernetes.io/", "kubernetes.io/", "node.kubernetes.io/")


class FleetError(ValueError):
    """A fleet that cannot be built; the message names the field and what is allowed."""


@dataclass(frozen=True, slots=True)
class InstanceProfile:
    """One simulated instance type: its CPU features and its size."""

    instance_type: str
    cpu: str
    features: Features
    vcpus: int
    memory_mib: int
    max_pods: int

    @property
    def allocatable_cpu_millis(self) -> int:
        return self.vcpus * 1000 - eks_reserved_cpu_millis(self.vcpus)

    @property
    def allocatable_memory_mib(self) -> int:
        # EKS bootstrap: kube-reserved 255Mi + 11Mi per pod, plus a 100Mi eviction threshold.
        return self.memory_mib - (255 + 11 * self.max_pods) - 100


def eks_reserved_cpu_millis(vcpus: int) -> int:
    """EKS kube-reserved CPU: 6% of core 1, 1% of core 2, 0.5% of cores 3-4, 0.25% above."""
    shares = [60, 10, 5, 5]  # millicores for cores 1..4
    return sum(shares[:vcpus]) + max(vcpus - 4, 0) * 25 // 10


MAX_GROUP_NODES = 500  # per fleet-file entry: a typo'd count fails fast, not after minutes


def fleet_yaml(pools: Iterable[tuple[str, int, Mapping[str, str]]]) -> str:
    """A fleet file with `count` nodes per (instance type, count, labels), split into entries
    of at most MAX_GROUP_NODES nodes (for benchmarks of thousands of nodes)."""
    lines = ["nodes:"]
    for instance_type, total, labels in pools:
        for start in range(0, total, MAX_GROUP_NODES):
            entry = {"instanceType": instance_type, "count": min(total - start, MAX_GROUP_NODES),
                     "labels": dict(labels)}  # fmt: skip
            lines.append(f"  - {json.dumps(entry)}")  # JSON is YAML flow style
    return "\n".join(lines) + "\n"


class Taint(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str = Field(min_length=1)
    value: str = ""
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"]


class NodeGroup(BaseModel):
    """`count` nodes of one instance type, with optional extra labels and taints."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    instance_type: str = Field(alias="instanceType")
    count: int = Field(default=1, ge=1, le=MAX_GROUP_NODES)
    labels: dict[str, str] = Field(default_factory=dict)
    taints: tuple[Taint, ...] = ()

    @field_validator("instance_type")
    @classmethod
    def _known_type(cls, instance_type: str) -> str:
        known = instance_profiles()
        if instance_type not in known:
            raise ValueError(f"unknown instance type {instance_type!r}; known: {', '.join(known)}")
        return instance_type

    @field_validator("labels")
    @classmethod
    def _no_profile_labels(cls, labels: dict[str, str]) -> dict[str, str]:
        owned = sorted(k for k in labels if k.startswith(_RESERVED_PREFIXES))
        if owned:
            raise ValueError(
                f"{', '.join(owned)}: set by the instance profile; extra labels may not use"
                f" the prefixes {', '.join(_RESERVED_PREFIXES)}"
            )
        return labels


class Fleet(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    nodes: tuple[NodeGroup, ...] = Field(min_length=1)


@functools.cache
def instance_profiles() -> dict[str, InstanceProfile]:
    """Every simulated instance type, from the package data."""
    table = yaml.safe_load(_package_text(_PROFILES, "instance-types.yaml"))
    return {name: _profile(name, row) for name, row in table.items()}


def _profile(name: str, row: dict[str, Any]) -> InstanceProfile:
    text = _package_text(f"{_PROFILES}.cpuinfo", f"{row['cpu']}.txt")
    return InstanceProfile(
        instance_type=name,
        cpu=row["cpu"],
        features=features_from_cpuinfo(text),
        vcpus=int(row["vcpus"]),
        memory_mib=int(row["memoryMiB"]),
        max_pods=int(row["maxPods"]),
    )


def named_fleets() -> tuple[str, ...]:
    folder = resources.files(f"{_PROFILES}.fleets")
    return tuple(sorted(p.name.removesuffix(".yaml") for p in folder.iterdir()
                        if p.name.endswith(".yaml")))  # fmt: skip


def load_fleet(name_or_path: str | None) -> Fleet:
    """A named fleet ("default", "mixed", ...) or a fleet YAML file."""
    name = name_or_path or DEFAULT_FLEET
    if name in named_fleets():
        return parse_fleet(_package_text(f"{_PROFILES}.fleets", f"{name}.yaml"), name)
    path = Path(name)
    if not path.is_file():
        raise FleetError(
            f"fleet {name!r}: no such file and no fleet of that name;"
            f" named fleets: {', '.join(named_fleets())}"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise FleetError(f"fleet file {name}: cannot read it: {exc}") from None
    return parse_fleet(text, name)


def parse_fleet(text: str, source: str = "fleet") -> Fleet:
    """Validate fleet YAML; errors name the field, e.g. `nodes[1].instanceType: ...`."""
    try:
        data = load_one(text)
    except YamlTextError as exc:
        raise FleetError(f"{source}: {exc}") from None
    try:
        return Fleet.model_validate(data)
    except ValidationError as exc:
        raise FleetError(f"{source}: " + "; ".join(_describe(e) for e in exc.errors())) from None


def _describe(error: Any) -> str:
    parts = [f"[{p}]" if isinstance(p, int) else f".{field_name(p)}" for p in error["loc"]]
    where = "".join(parts).lstrip(".") or "fleet"
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown field (allowed: nodes[].instanceType, count, labels, taints)"
    elif error["type"] == "model_type":
        message = "expected a mapping like {nodes: [{instanceType: m6i.xlarge, count: 2}]}"
    return f"{where}: {message}"


def node_manifests(fleet: Fleet) -> list[dict[str, Any]]:
    """One Node object per simulated node, named `<type-with-dashes>-<n>`."""
    manifests: list[dict[str, Any]] = []
    counters: dict[str, int] = {}
    for group in fleet.nodes:
        profile = instance_profiles()[group.instance_type]
        for _ in range(group.count):
            index = counters.get(group.instance_type, 0)
            counters[group.instance_type] = index + 1
            name = f"{group.instance_type.replace('.', '-')}-{index}"
            manifests.append(_node(name, profile, group))
    return manifests


def _node(name: str, profile: InstanceProfile, group: NodeGroup) -> dict[str, Any]:
    labels = nfd_labels(profile.features) | {
        names.ARCH_LABEL: profile.features.arch,
        "kubernetes.io/os": "linux",
        "kubernetes.io/hostname": name,
        names.INSTANCE_TYPE_LABEL: profile.instance_type,
        "type": "kwok",
        **group.labels,
    }
    node: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": labels, "annotations": {KWOK_ANNOTATION: "fake"}},
        "status": _status(profile),
    }
    if group.taints:
        node["spec"] = {"taints": [t.model_dump() for t in group.taints]}
    return node


def _status(profile: InstanceProfile) -> dict[str, Any]:
    capacity = {
        "cpu": str(profile.vcpus),
        "memory": f"{profile.memory_mib}Mi",
        "pods": str(profile.max_pods),
    }
    allocatable = {
        "cpu": f"{profile.allocatable_cpu_millis}m",
        "memory": f"{profile.allocatable_memory_mib}Mi",
        "pods": str(profile.max_pods),
    }
    node_info = {"architecture": profile.features.arch, "operatingSystem": "linux"}
    return {"capacity": capacity, "allocatable": allocatable, "nodeInfo": node_info}


def _package_text(package: str, name: str) -> str:
    return resources.files(package).joinpath(name).read_text(encoding="utf-8")
