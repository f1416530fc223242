"""The container image, built here (`hack/image/build.sh` = `make image`) and run.

The module builds the image (a warm cache makes that seconds) and fails, never skips,
if it cannot: buildah, podman and mmdebstrap come from Debian packages that `.ci/run`
installs. Then, from the image, it runs the chart's own webhook and operator command
lines (`helm template` of charts/flox-isa, args and env taken from its Deployments) with
`buildah run --isolation chroot`, as the image's user (uid 65532), with the files the
Deployments mount (TLS, the catalog ConfigMap, the service account's token and CA: the
processes use the in-cluster configuration) and the chart's RBAC applied. The webhook
is registered with the devcluster's API server by URL; the host's network is shared.

What this proves: the Dockerfile builds without network from pinned wheels; the image's
entrypoint, user, venv and dependencies run both components against a real API server
with the chart's permissions; nothing outside /tmp is written (buildah run has no
read-only root: the root filesystem is compared before and after). What it does not:
the base here is Debian 12's Python 3.11 from packages, not the python:3.11-slim image
a `docker build` uses; amd64 only (multi-arch with `docker buildx` is documented, not
tested); no container runtime (kubelet, seccomp, dropped capabilities): pods on the
devcluster are kwok's simulations.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import ssl
import subprocess
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from flox_isa.devcluster.build import bin_dir
from flox_isa.devcluster.cluster import free_ports
from flox_isa.isa import names
from flox_isa.webhook.certs import write_serving_certs
from flox_isa.webhook.registration import webhook_configuration
from tests.e2e.conftest import DevCluster
from tests.e2e.polling import wait_until

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "flox-isa"
BUILD = ROOT / "hack" / "image" / "build.sh"
DESCRIPTION = ROOT / "build" / "image" / "image.json"
MANIFEST = ROOT / "hack" / "image" / "manifest.py"
RUN = f"r{uuid.uuid4().hex[:5]}"  # never all digits or "1e5...": YAML would read a number
RELEASE = f"img-{RUN}"
NAMESPACE = f"flox-isa-img-{RUN}"
SCOPE_LABEL = "e2e.flox.dev/image-run"
# /var/run/secrets/kubernetes.io/serviceaccount, where pods get it, through the image's
# /var/run -> /run link: buildah 1.28 loses a mount through a link on a second run.
SERVICE_ACCOUNT_DIR = "/run/secrets/kubernetes.io/serviceaccount"
RBAC_KINDS = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
IMAGE_UID = 65532
# Where a process in the image may write: the chart mounts an emptyDir there.
WRITABLE = "tmp"
# Mount points of the container's runtime and its volumes, not part of the image.
NOT_THE_IMAGE = {"proc", "sys", "dev", "run", WRITABLE}


@dataclass
class Image:
    ref: str
    version: str
    storage: list[str]
    description: dict[str, Any]

    def buildah(self, *args: str, check: bool = True) -> str:
        done = subprocess.run(
            ["buildah", *self.storage, *args], capture_output=True, text=True, check=False
        )
        if check and done.returncode:
            raise AssertionError(f"buildah {' '.join(args[:3])}: {done.stderr.strip()}")
        return done.stdout

    def container(self) -> str:
        name = f"flox-isa-e2e-{uuid.uuid4().hex[:8]}"
        self.buildah("from", "--pull=never", "--quiet", "--name", name, self.ref)
        return name

    def run(self, container: str, *command: str, options: tuple[str, ...] = ()) -> str:
        return self.buildah("run", "--isolation", "chroot", *options, container, "--", *command)


@pytest.fixture(scope="module")
def image() -> Image:
    if shutil.which("buildah") is None:
        pytest.fail(
            "buildah is not installed: apt-get install -y buildah podman mmdebstrap crun "
            "(.ci/run does it)",
            pytrace=False,
        )
    done = subprocess.run([str(BUILD)], capture_output=True, text=True, check=False)
    if done.returncode:
        pytest.fail(f"{BUILD} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}", pytrace=False)
    print(done.stdout)
    description = json.loads(DESCRIPTION.read_text())
    return Image(description["image"], description["version"], description["storage"], description)


def _snapshot(root: Path) -> dict[str, tuple[Any, ...]]:
    """Every path of a root filesystem but the runtime's mount points, with its metadata."""
    found: dict[str, tuple[Any, ...]] = {}
    for directory, subdirs, files in os.walk(root):
        relative = Path(directory).relative_to(root)
        if relative == Path("."):
            subdirs[:] = [d for d in subdirs if d not in NOT_THE_IMAGE]
        for name in [*subdirs, *files]:
            path = Path(directory, name)
            stat = path.lstat()
            target = os.readlink(path) if path.is_symlink() else ""
            found[str(relative / name)] = (
                stat.st_mode,
                stat.st_uid,
                stat.st_gid,
                stat.st_size,
                stat.st_mtime_ns,
                target,
            )
    return found


def _changes(before: dict[str, tuple[Any, ...]], after: dict[str, tuple[Any, ...]]) -> list[str]:
    return sorted(
        [f"added {p}" for p in after.keys() - before.keys()]
        + [f"removed {p}" for p in before.keys() - after.keys()]
        + [f"changed {p}" for p in before.keys() & after.keys() if before[p] != after[p]]
    )


@dataclass
class Process:
    """A `buildah run` of one command line of the chart, in its own container."""

    image: Image
    container: str
    process: subprocess.Popen[bytes]
    log: Path
    before: dict[str, tuple[Any, ...]]

    def stop(self) -> list[str]:
        """Stop it; return what changed in the root filesystem outside /tmp."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        root = Path(self.image.buildah("mount", self.container).strip())
        changes = _changes(self.before, _snapshot(root))
        self.image.buildah("rm", self.container, check=False)
        print(f"--- {self.log.name}\n{self.log.read_text()[-3000:]}")
        return changes

    def uids(self, marker: str) -> set[int]:
        """Real uids of the processes whose command line holds `marker` (buildah's own
        helper excluded): chroot isolation shares the host's PID namespace."""
        uids = set()
        for proc in Path("/proc").iterdir():
            try:
                cmdline = (proc / "cmdline").read_bytes().split(b"\0")
                status = (proc / "status").read_text()
            except OSError:
                continue
            if marker.encode() in cmdline and not cmdline[0].startswith(b"buildah"):
                (uid_line,) = [line for line in status.splitlines() if line.startswith("Uid:")]
                uids.add(int(uid_line.split()[1]))
        return uids


def _start(
    image: Image, argv: list[str], env: dict[str, str], volumes: dict[str, Path], log: Path
) -> Process:
    container = image.container()
    options: list[str] = []
    for target, source in volumes.items():
        options += ["--volume", f"{source}:{target}:ro"]
    for key, value in env.items():
        options += ["--env", f"{key}={value}"]
    tmp = log.parent / f"tmp-{container}"
    tmp.mkdir(mode=0o1777)
    tmp.chmod(0o1777)
    options += ["--volume", f"{tmp}:/{WRITABLE}"]
    # A first run creates the mount points of the volumes: the image's baseline after it.
    image.run(container, "true", options=tuple(options))
    root = Path(image.buildah("mount", container).strip())
    before = _snapshot(root)
    command = [
        "buildah",
        *image.storage,
        "run",
        "--isolation",
        "chroot",
        *options,
        container,
        "--",
        "flox-isa",
        *argv,
    ]
    with log.open("wb") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT)
    return Process(image, container, process, log, before)


@dataclass
class Chart:
    """The chart rendered for this module's release, and the cluster side of it applied."""

    cluster: DevCluster
    objects: list[dict[str, Any]]
    webhook_port: int
    health_port: int

    def kubectl(self, *args: str, stdin: str | None = None) -> str:
        done = subprocess.run(
            [str(bin_dir() / "kubectl"), "--kubeconfig", str(self.cluster.kubeconfig), *args],
            input=stdin,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode:
            raise AssertionError(f"kubectl {' '.join(args[:3])}: {done.stderr.strip()}")
        return done.stdout

    def pod_spec(self, component: str) -> dict[str, Any]:
        """The pod template spec of a component's Deployment."""
        (deployment,) = [
            o
            for o in self.objects
            if o["kind"] == "Deployment"
            and o["metadata"]["labels"].get("app.kubernetes.io/component") == component
        ]
        spec: dict[str, Any] = deployment["spec"]["template"]["spec"]
        return spec

    def container(self, component: str) -> dict[str, Any]:
        (container,) = self.pod_spec(component)["containers"]
        assert isinstance(container, dict)
        return container

    def service_account(self, component: str) -> str:
        name = self.pod_spec(component)["serviceAccountName"]
        assert isinstance(name, str)
        return name

    def catalog(self) -> str:
        (config_map,) = [o for o in self.objects if o["kind"] == "ConfigMap"]
        text = config_map["data"]["catalog.yaml"]
        assert isinstance(text, str)
        return text


@pytest.fixture(scope="module")
def chart(cluster: DevCluster) -> Iterator[Chart]:
    webhook_port, health_port = free_ports(2)
    rendered = subprocess.run(
        [
            str(bin_dir() / "helm"),
            "template",
            RELEASE,
            str(CHART),
            "-n",
            NAMESPACE,
            "--set",
            f"webhook.port={webhook_port}",
            "--set",
            f"operator.healthPort={health_port}",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert rendered.returncode == 0, rendered.stderr
    objects = [o for o in yaml.safe_load_all(rendered.stdout) if o]
    chart = Chart(cluster, objects, webhook_port, health_port)
    chart.kubectl("create", "namespace", NAMESPACE)
    chart.kubectl("apply", "-f", str(CHART / "crds"))
    chart.kubectl("wait", "--for=condition=Established", "crd/ticketworkers.isa.flox.dev")
    rbac = [o for o in objects if o["kind"] in RBAC_KINDS]
    chart.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(rbac))
    try:
        yield chart
    finally:
        for o in rbac:
            if "namespace" not in o["metadata"]:
                chart.kubectl(
                    "delete", o["kind"].lower(), o["metadata"]["name"], "--ignore-not-found"
                )
        chart.kubectl("delete", "namespace", NAMESPACE, "--wait=false")


def _in_cluster(chart: Chart, component: str, directory: Path) -> tuple[dict[str, str], Path]:
    """What a pod of `component` gets from Kubernetes: the service account's token, CA and
    namespace files, and the API server's address in the environment."""
    with chart.cluster.api_client() as api:
        core: Any = client.CoreV1Api(api)
        token = core.create_namespaced_service_account_token(
            chart.service_account(component),
            NAMESPACE,
            client.AuthenticationV1TokenRequest(
                spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=3600)
            ),
        ).status.token
        host = api.configuration.host
        ca = Path(api.configuration.ssl_ca_cert).read_bytes()
    files = directory / f"{component}-serviceaccount"
    files.mkdir()
    (files / "token").write_text(token)
    (files / "ca.crt").write_bytes(ca)
    (files / "namespace").write_text(NAMESPACE)
    for path in [files, *files.iterdir()]:
        os.chown(path, IMAGE_UID, IMAGE_UID)
    address, port = host.removeprefix("https://").rsplit(":", 1)
    return {"KUBERNETES_SERVICE_HOST": address, "KUBERNETES_SERVICE_PORT": port}, files


def _volumes(chart: Chart, component: str, catalog: Path, tls: Path | None) -> dict[str, Path]:
    """The chart's volume mounts of `component`, each backed by a host directory."""
    sources = {"catalog": catalog, "tls": tls}
    mounts = {}
    for mount in chart.container(component)["volumeMounts"]:
        if mount["mountPath"] == f"/{WRITABLE}":
            continue
        source = sources[mount["name"]]
        assert source is not None, mount
        mounts[mount["mountPath"]] = source
    return mounts


def _plain_env(container: dict[str, Any]) -> dict[str, str]:
    """The container's env; POD_NAMESPACE (a fieldRef) is the release namespace."""
    env = {}
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
        elif item.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.namespace":
            env[item["name"]] = NAMESPACE
        else:
            raise AssertionError(f"the test does not provide {item}")
    return env


def _catalog_dir(chart: Chart, directory: Path) -> Path:
    path = directory / "catalog"
    path.mkdir(exist_ok=True)
    (path / "catalog.yaml").write_text(chart.catalog())
    return path


def _get(url: str, ca: Path | None = None) -> int:
    context = ssl.create_default_context(cafile=str(ca)) if ca else None
    try:
        with urllib.request.urlopen(url, context=context, timeout=3) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0


def _delete_if_there(delete: Callable[[str], Any], name: str) -> None:
    try:
        delete(name)
    except client.ApiException as exc:
        if exc.status != 404:
            raise


def test_the_image_is_what_the_package_and_the_chart_expect(image: Image) -> None:
    config = json.loads(image.buildah("inspect", "--type", "image", image.ref))
    oci = config["OCIv1"]["config"]
    assert oci["User"] == f"{IMAGE_UID}:{IMAGE_UID}"
    assert oci["Entrypoint"] == ["flox-isa"]
    labels = oci["Labels"]
    assert labels["org.opencontainers.image.version"] == version("flox-isa") == image.version
    container = image.container()
    try:
        # The image's default user is the chart's runAsUser, and the package is this one.
        assert image.run(container, "id", "-u").strip() == str(IMAGE_UID)
        assert image.run(container, "flox-isa", "--version").strip() == (
            f"flox-isa {version('flox-isa')}"
        )
        root = Path(image.buildah("mount", container).strip())
        paths = _snapshot(root)
    finally:
        image.buildah("rm", container, check=False)
    compilers = [
        p for p in paths
        if Path(p).parent.name in {"bin", "sbin"}
        and Path(p).name in {"cc", "gcc", "c++", "g++", "clang", "ld"}
    ]  # fmt: skip
    assert compilers == []
    pip_caches = [p for p in paths if "/.cache/pip" in f"/{p}" or p.endswith(".cache/pip")]
    assert pip_caches == []
    # Nothing of the build is left: no wheels, no sources, no tests (ours or a dependency's).
    assert not {"wheels", "src"} & {p.split("/")[0] for p in paths}
    # Dependencies' test suites are dropped in the build; modules of theirs named test_*
    # (aiohttp.test_utils, annotated_types.test_cases: APIs) stay.
    suites = [
        p for p in paths
        if p.startswith("opt/") and Path(p).name in {"tests", "test", "conftest.py"}
    ]  # fmt: skip
    assert suites == []
    ours = {p.name for p in (ROOT / "tests").rglob("test_*.py")}
    assert ours and not ours & {Path(p).name for p in paths}
    assert "opt/flox-isa/bin/flox-isa" in paths


def _manifest_module() -> Any:
    """hack/image/manifest.py, whose check the build runs (hack/ is not a package)."""
    spec = importlib.util.spec_from_file_location("image_manifest", MANIFEST)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_package_manifest_matches_constraints(image: Image) -> None:
    manifest = json.loads((DESCRIPTION.parent / "packages.json").read_text())
    assert manifest["image"] == image.ref
    check = _manifest_module()
    pins = check.read_pins((ROOT / "constraints.txt").read_text())
    python = {p["name"]: p["version"] for p in manifest["python"]}
    assert check.mismatches(python, pins) == []
    assert python["flox-isa"] == version("flox-isa")
    # The runtime dependencies, at their pins; none of the dev tools.
    assert python["kopf"] == pins["kopf"] and python["fastapi"] == pins["fastapi"]
    assert not {"pytest", "mypy", "ruff", "hypothesis", "import-linter"} & python.keys()
    if image.description["base"].startswith("localhost/flox-isa-base:"):
        debian = {p["package"] for p in manifest["debian"]}
        assert {"python3.11", "ca-certificates"} <= debian


def test_the_webhook_from_the_image_patches_a_real_pod(
    image: Image, chart: Chart, cluster: DevCluster, tmp_path: Path
) -> None:
    certs = write_serving_certs(tmp_path / "tls")
    for path in [certs.cert_path, certs.key_path]:
        os.chown(path, IMAGE_UID, IMAGE_UID)  # the chart's fsGroup makes the Secret readable
    container = chart.container("webhook")
    env, service_account = _in_cluster(chart, "webhook", tmp_path)
    volumes = _volumes(chart, "webhook", _catalog_dir(chart, tmp_path), tmp_path / "tls")
    volumes[SERVICE_ACCOUNT_DIR] = service_account
    running = _start(image, container["args"], env, volumes, tmp_path / "webhook.log")
    url = f"https://127.0.0.1:{chart.webhook_port}"
    name = f"flox-isa-image-{RUN}"
    pod_namespace = f"img-pods-{RUN}"
    with cluster.api_client() as api:
        registrations: Any = client.AdmissionregistrationV1Api(api)
        core: Any = client.CoreV1Api(api)
        try:
            wait_until(
                "the image's webhook /readyz",
                lambda: _get(url + "/readyz", certs.ca_path) == 200,
                timeout=90,
            )
            assert running.uids(f"--port={chart.webhook_port}") == {IMAGE_UID}
            registrations.create_mutating_webhook_configuration(
                webhook_configuration(name, url, certs.ca_pem, namespace_labels={SCOPE_LABEL: RUN})
            )
            core.create_namespace(
                {
                    "metadata": {
                        "name": pod_namespace,
                        "labels": {SCOPE_LABEL: RUN, names.INJECT_LABEL: "true"},
                    }
                }
            )
            pod = {
                "metadata": {
                    "name": "tickets",
                    "annotations": {
                        names.ENVIRONMENT_ANNOTATION: "acme/tickets",
                        names.WORKLOAD_ANNOTATION: "int8-inference",
                    },
                },
                "spec": {"containers": [{"name": "worker", "image": "ghcr.io/flox/flox:latest"}]},
            }

            def patched() -> Any:
                # The API server loads webhook configurations asynchronously: dry runs first.
                made = core.create_namespaced_pod(pod_namespace, pod, dry_run="All")
                return (made.metadata.labels or {}).get(names.VARIANT_LABEL)

            wait_until("the webhook configuration to take effect", patched, timeout=30)
            made = core.create_namespaced_pod(pod_namespace, pod)
            variant = made.metadata.labels[names.VARIANT_LABEL]
            annotations = made.metadata.annotations
            assert annotations[names.ENVIRONMENT_ANNOTATION] == f"acme/tickets-{variant}"
            assert annotations[names.BASE_ENVIRONMENT_ANNOTATION] == "acme/tickets"
            assert made.spec.node_selector[names.ARCH_LABEL]

            # The decision was the image's process's: it logged it (once: the real
            # creation, same inputs as the dry runs, is answered from memory at DEBUG).
            def logged() -> bool:
                lines = [
                    json.loads(line)
                    for line in running.log.read_text().splitlines()
                    if line.startswith("{")
                ]
                return any(
                    line.get("namespace") == pod_namespace
                    and line.get("pod") == "tickets"
                    and line.get("variant") == variant
                    for line in lines
                )

            wait_until("the decision in the image's log", logged, timeout=10)
        finally:
            _delete_if_there(registrations.delete_mutating_webhook_configuration, name)
            _delete_if_there(core.delete_namespace, pod_namespace)
            changes = running.stop()
    assert changes == [], f"the webhook wrote outside /{WRITABLE}: {changes[:20]}"


def test_the_operator_from_the_image_converges_a_ticketworker(
    image: Image, chart: Chart, tmp_path: Path
) -> None:
    container = chart.container("operator")
    env, service_account = _in_cluster(chart, "operator", tmp_path)
    env.update(_plain_env(container))
    volumes = _volumes(chart, "operator", _catalog_dir(chart, tmp_path), None)
    volumes[SERVICE_ACCOUNT_DIR] = service_account
    running = _start(image, container["args"], env, volumes, tmp_path / "operator.log")
    namespace = f"img-tw-{RUN}"
    chart.kubectl("create", "namespace", namespace)
    try:
        wait_until(
            "the operator's /healthz",
            lambda: _get(f"http://127.0.0.1:{chart.health_port}/healthz") == 200,
            timeout=90,
        )
        assert running.uids(f"--health-port={chart.health_port}") == {IMAGE_UID}
        tw = {
            "apiVersion": "isa.flox.dev/v1alpha1",
            "kind": "TicketWorker",
            "metadata": {"name": "tickets", "namespace": namespace},
            "spec": {"environment": "acme/tickets", "workload": "int8-inference", "replicas": 6},
        }
        chart.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(tw))

        def ready() -> dict[str, Any] | None:
            got = json.loads(chart.kubectl("get", "tw", "tickets", "-n", namespace, "-o", "json"))
            status: dict[str, Any] = got.get("status") or {}
            conditions = {c["type"]: c["status"] for c in status.get("conditions") or []}
            return status if conditions.get("Ready") == "True" else None

        status: Any = wait_until("the TicketWorker Ready", ready, timeout=120)
        assert status["readyReplicas"] == 6
        deployments = json.loads(
            chart.kubectl(
                "get",
                "deployments",
                "-n",
                namespace,
                "-l",
                f"{names.TICKETWORKER_LABEL}=tickets",
                "-o",
                "json",
            )
        )["items"]
        variants = {
            d["metadata"]["labels"][names.VARIANT_LABEL]: d["spec"]["replicas"] for d in deployments
        }
        assert sum(variants.values()) == 6
        assert {v["variant"] for v in status["variants"]} == set(variants)
        lease = json.loads(chart.kubectl("get", "lease", "-n", NAMESPACE, "-o", "json"))["items"]
        assert lease, "the operator from the image holds the chart's Lease"
    finally:
        chart.kubectl("delete", "namespace", namespace, "--wait=false")
        changes = running.stop()
    assert changes == [], f"the operator wrote outside /{WRITABLE}: {changes[:20]}"
