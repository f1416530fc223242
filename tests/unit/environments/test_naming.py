"""The environments `render` writes are the ones the demo's pods ask for.

The operator (TicketWorker -> Deployments), the webhook (pod -> patch) and the placement
controller (gated pod -> pinned pod) each decide on the demo's own fleet and workloads;
every environment they put on a pod must be one that `flox-isa environments render` wrote
(owner + the name in its env.json). All of them name environments with
isa.contract.variant_environment.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from flox_isa.cli import main
from flox_isa.demo import scenario
from flox_isa.devcluster.fleet import load_fleet, node_manifests
from flox_isa.isa import names
from flox_isa.isa.catalog import DEFAULT_CATALOG_DATA, Catalog, catalog_from_data, catalog_to_yaml
from flox_isa.isa.fleet import feature_groups
from flox_isa.isa.fleet_index import index_nodes
from flox_isa.isa.nodes import node_info, node_state
from flox_isa.isa.offer import OfferIndex
from flox_isa.isa.placement import Placement, ungated
from flox_isa.operator.diff import Create
from flox_isa.operator.reconcile import decide as reconcile
from flox_isa.webhook.decision import Context
from flox_isa.webhook.decision import decide as admit
from flox_isa.webhook.models import pod_from
from tests.unit.webhook.test_decision import apply_patch

MANIFEST = Path(__file__).resolve().parents[2] / "data" / "flox" / "build-pytorch.toml"


def rendered_environments(
    capsys: pytest.CaptureFixture[str], out: Path, base: str, catalog: Path | None
) -> set[str]:
    argv = ["environments", "render", "--manifest", str(MANIFEST), "--name", base]
    argv += ["--out", str(out / base)] + (["--catalog", str(catalog)] if catalog else [])
    assert main(argv) == 0, capsys.readouterr().err
    capsys.readouterr()
    owner = base.split("/", maxsplit=1)[0]
    return {
        f"{owner}/{json.loads(p.read_text())['name']}"
        for p in (out / base).glob("*/.flox/env.json")
    }


def asked_for(catalog: Catalog) -> set[str]:
    """The environments the demo's pods get, from the operator and the webhook."""
    nodes = node_manifests(load_fleet("mixed"))
    for node in nodes:  # in the demo, kwok reports them Ready
        node["status"]["conditions"] = [{"type": "Ready", "status": "True"}]
    groups = feature_groups([node_info(n) for n in nodes])
    ticketworker = {**scenario.ticketworker(), "metadata": {
        **scenario.ticketworker()["metadata"], "uid": "uid-1", "generation": 1,
    }}  # fmt: skip
    decision = reconcile(ticketworker, catalog, lambda _spec: groups, {})
    environments = set()
    for action in decision.actions:
        assert isinstance(action, Create), action
        annotations = action.body["spec"]["template"]["metadata"]["annotations"]
        environments.add(annotations[names.ENVIRONMENT_ANNOTATION])
    ctx = Context(catalog, OfferIndex(index_nodes([node_state(n) for n in nodes]), catalog))
    template = copy.deepcopy(scenario.summarizer()["spec"]["template"])
    pod = {"apiVersion": "v1", "kind": "Pod", **template}
    pod["metadata"] = {**template["metadata"], "name": "summarizer-0"}
    answer = admit(pod_from(pod), scenario.NAMESPACE, True, ctx)
    assert answer.reason == "auto", answer.message
    patched = apply_patch(pod, answer.patch)
    environments.add(patched["metadata"]["annotations"][names.ENVIRONMENT_ANNOTATION])
    # With late binding the placement controller pins the gated pod instead, possibly
    # spilling to any variant down the rank order: each of those names counts too.
    base = template["metadata"]["annotations"][names.ENVIRONMENT_ANNOTATION]
    for variant in catalog.variants:
        pinned = ungated(pod, Placement(variant, "node-0", "spill"), base, "fp32-inference")
        environments.add(pinned["metadata"]["annotations"][names.ENVIRONMENT_ANNOTATION])
    return environments


@pytest.mark.parametrize("suffix", ["", "-isa-avx512vnni"])
def test_every_environment_the_demo_asks_for_is_rendered(
    suffix: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = copy.deepcopy(DEFAULT_CATALOG_DATA)
    if suffix:  # a catalog with its own environment suffix: all three follow it
        data["variants"][3]["environmentSuffix"] = suffix
    catalog = catalog_from_data(data)
    catalog_file = tmp_path / "catalog.yaml"
    catalog_file.write_text(catalog_to_yaml(catalog))
    asked = asked_for(catalog)
    bases = {"acme/ticket-embedder", "acme/ticket-summarizer"}
    # The demo's int8 TicketWorker spreads over 4 variants; the fp32 summarizer may be
    # placed on any of the 6.
    assert len(asked) == 4 + 6, sorted(asked)
    rendered: set[str] = set()
    for base in bases:
        rendered |= rendered_environments(capsys, tmp_path, base, catalog_file)
    assert asked <= rendered, sorted(asked - rendered)
    if suffix:
        assert f"acme/ticket-embedder{suffix}" in asked
