"""`qwdeploy sweep --ray` on a two-node cluster started on this machine: the head advertises x86-server, a
worker rpi5. Each target's evaluation and profile must run on its own node (node ids in the results); losing
the worker mid-sweep must cost only its cells.

Both nodes are processes here, on this machine's own address rather than 127.0.0.1: ray.init rewrites a
loopback address to the machine's (services.resolve_ip_for_localhost), so a driver cannot join a GCS that
listens on loopback only. The health checks are tightened so a killed node is declared dead within a second.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import ray
from ray.cluster_utils import Cluster

from qwdeploy.toolkit.sweep.api import sweep
from qwdeploy.toolkit.sweep.plan import load_plan
from qwdeploy.toolkit.sweep.state import digest

from sweep_cases import run_sweep, write_plan

pytestmark = [pytest.mark.ray_cluster, pytest.mark.timeout(600)]

NODE = {"num_cpus": 1, "object_store_memory": 128 * 2**20}
HEAD = {**NODE, "resources": {"x86-server": 1}, "include_dashboard": False,
        "_system_config": {"health_check_initial_delay_ms": 0, "health_check_period_ms": 300,
                           "health_check_failure_threshold": 3}}
TARGETS = ("rpi5", "x86-server")


@pytest.fixture(scope="module")
def cluster():
    """The head node; stopped (with every node added) however the tests end."""
    cluster = Cluster(initialize_head=False)
    try:
        cluster.add_node(**HEAD)
        yield cluster
    finally:
        if ray.is_initialized():
            ray.shutdown()
        cluster.shutdown()


@pytest.fixture
def worker(cluster):
    """A worker node advertising rpi5, removed after the test if it still runs."""
    node = cluster.add_node(**NODE, resources={"rpi5": 1})
    try:
        cluster.wait_for_nodes()
        yield node
    finally:
        if node in cluster.worker_nodes:
            cluster.remove_node(node)


def _plan(checkpoints: Path, folder: Path, **settings) -> Path:
    return write_plan(folder, {"qwen2": checkpoints / "qwen2"}, targets=TARGETS, quants=("q8_0",), **settings)


def test_each_targets_cells_run_on_the_node_that_advertises_it(cluster, worker, checkpoints, tmp_path):
    run = run_sweep(_plan(checkpoints, tmp_path, positions=16), tmp_path / "out", "--ray", cluster.address)
    nodes = {"rpi5": worker.node_id, "x86-server": cluster.head_node.node_id}
    for target, node in nodes.items():
        cell = run.cell(f"qwen2/gguf-q8_0/{target}")
        assert cell["status"] == "done", cell["reason"]
        for step in ("quality", "speed"):
            assert cell[step]["where"]["node"] == node and cell[step]["where"]["stand_in"] is False
        assert f"ray node {node[:12]}" in run.output
    # Exported once, fetched by the driver whole: the copy kept for reruns hashes as the export did.
    artifact = run.cell("qwen2/gguf-q8_0/rpi5")["artifact"]
    assert digest(tmp_path / "out" / "artifacts" / artifact["name"]) == artifact["sha256"]
    assert run.doc["work"] == {"exports": 1, "evals": 2, "profiles": 2}
    assert run.doc["runner"] == {"kind": "ray", "address": cluster.address}


def _kill_when_busy(cluster, node, resource: str, finished: threading.Event) -> bool:
    """Kill `node` as soon as a task holds all of `resource` (a profile runs there); False if none did."""
    while not finished.is_set():
        try:
            busy = ray.is_initialized() and ray.available_resources().get(resource, 0) == 0 \
                and resource in ray.cluster_resources()
        except Exception:  # the driver is connecting or disconnecting
            busy = False
        if busy:
            cluster.remove_node(node, allow_graceful=False)
            return True
        time.sleep(0.05)
    return False


def test_losing_a_node_mid_sweep_costs_only_its_cells(cluster, worker, checkpoints, tmp_path):
    """Artifacts travel by a shared path here (both nodes see this machine's disk), not the object store."""
    shared = tmp_path / "shared"
    plan = load_plan(_plan(checkpoints, tmp_path, metrics=(), limits="", gen=16, runs=3,
                           tables=f'[cluster]\nshared = "{shared}"\n'))
    finished, result = threading.Event(), {}

    def run() -> None:
        try:
            result["report"] = sweep(plan, tmp_path / "out", cluster.address, progress=False)
        finally:
            finished.set()

    thread = threading.Thread(target=run)
    thread.start()
    killed = _kill_when_busy(cluster, worker, "rpi5", finished)
    thread.join(timeout=300)
    assert killed and not thread.is_alive()
    cells = {c.target: c for c in result["report"].cells}
    assert cells["x86-server"].status == "done"
    assert cells["x86-server"].speed.where.node == cluster.head_node.node_id
    artifact = cells["x86-server"].artifact
    assert digest(shared / artifact.name) == artifact.sha256 and not (tmp_path / "out" / "artifacts").exists()
    lost = cells["rpi5"]
    assert lost.status == "failed" and lost.reason.startswith("profile: ")
    # Ray retried the profile once the node died; no live node could take it, so the cell says why.
    assert "no live node advertises 'rpi5'" in lost.reason
