"""A pod's constraints as one value, and the one eligibility query on the fleet index."""

from __future__ import annotations

import json
from typing import Any

from flox_isa.isa import names
from flox_isa.isa.capacity import demand_of
from flox_isa.isa.constraints import Constraints, Requirement, Term, Toleration, constraints_of
from flox_isa.isa.fleet_index import FleetIndexBuilder, index_nodes
from flox_isa.isa.nodes import node_state
from flox_isa.isa.offer import OfferIndex
from flox_isa.isa.planning import eligible_groups
from flox_isa.webhook.models import pod_from
from tests.unit.webhook.test_decision import CATALOG, fleet_nodes, fleet_states

RICH: dict[str, Any] = {
    "nodeSelector": {"pool": "batch", names.ARCH_LABEL: "amd64"},
    "affinity": {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]},
                    {
                        "matchFields": [
                            {"key": "metadata.name", "operator": "In", "values": ["m6i-xlarge-0"]}
                        ]
                    },
                ]
            },
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 1,
                    "preference": {"matchExpressions": [{"key": "x", "operator": "Exists"}]},
                }
            ],
        }
    },
    "tolerations": [{"key": "dedicated", "value": "ml", "effect": "NoSchedule"}],
    "containers": [{"name": "c", "resources": {"requests": {"cpu": "1"}}}],
}


def test_a_pod_spec_becomes_one_value_with_the_apis_defaults() -> None:
    found = constraints_of(RICH)
    assert found == Constraints(
        node_selector=((names.ARCH_LABEL, "amd64"), ("pool", "batch")),
        required_terms=(
            Term(match_expressions=(Requirement("zone", "In", ("a",)),)),
            Term(match_fields=(Requirement("metadata.name", "In", ("m6i-xlarge-0",)),)),
        ),
        tolerations=(Toleration("dedicated", "Equal", "ml", "NoSchedule"),),
    )
    assert hash(found) == hash(constraints_of(json.loads(json.dumps(RICH))))


def test_equal_constraints_written_differently_are_one_key() -> None:
    one = {"nodeSelector": {"a": "1", "b": "2"}, "tolerations": [{"key": "k", "operator": "Equal"}]}
    other = {"nodeSelector": {"b": "2", "a": "1"}, "tolerations": [{"key": "k"}]}
    assert constraints_of(one) == constraints_of(other)
    assert constraints_of(one) != constraints_of({"nodeSelector": {"a": "1"}})


def test_preferences_and_resource_requests_are_not_constraints() -> None:
    bare = {k: v for k, v in RICH.items() if k != "containers"}
    assert constraints_of(RICH) == constraints_of(bare)
    assert demand_of(RICH) != demand_of(bare)  # requests are the Demand's, not here
    assert hash(demand_of(RICH)) == hash(demand_of(json.loads(json.dumps(RICH))))


def test_entries_of_the_wrong_shape_are_read_as_absent() -> None:
    odd: dict[str, Any] = {
        "nodeSelector": ["not", "a", "map"],
        "affinity": {"nodeAffinity": "none"},
        "tolerations": ["x", {"operator": "Exists"}],
    }
    assert constraints_of(odd) == Constraints(tolerations=(Toleration(operator="Exists"),))


def test_the_admission_edge_and_the_data_edge_build_the_same_value() -> None:
    pod = pod_from({"metadata": {"name": "p"}, "spec": RICH})
    assert pod.constraints == constraints_of(RICH)
    assert pod.constraints is pod.constraints  # built once per pod
    assert pod_from({"spec": {}}).constraints == Constraints()


def test_one_query_answers_both_the_offer_and_the_feature_groups() -> None:
    fleet = index_nodes(fleet_states())
    amd64 = constraints_of({"nodeSelector": {names.ARCH_LABEL: "amd64"}})
    offer = OfferIndex(fleet, CATALOG).offer(amd64)
    groups = eligible_groups(fleet, amd64)
    assert fleet.eligible(amd64) is fleet.eligible(
        constraints_of({"nodeSelector": {names.ARCH_LABEL: "amd64"}})
    )
    assert len(fleet._eligible) == 1  # one memo: the offer and the groups share its answer
    assert sum(g.node_count for g in groups) == offer.eligible_nodes == 12
    assert eligible_groups(fleet, amd64) is groups  # derived once
    assert OfferIndex(fleet, CATALOG).offer(amd64) is offer  # per fleet, not per OfferIndex


def test_a_new_fleet_version_answers_afresh() -> None:
    builder = FleetIndexBuilder()
    nodes = fleet_nodes()
    builder.replace(node_state(n) for n in nodes)
    first = builder.index()
    none = Constraints()
    before = first.eligible(none).node_count
    cordoned = {**nodes[0], "spec": {"unschedulable": True}}
    assert builder.upsert(node_state(cordoned))
    second = builder.index()
    assert second.version > first.version
    assert second.eligible(none).node_count == before - 1
    assert first.eligible(none).node_count == before  # an index never changes
