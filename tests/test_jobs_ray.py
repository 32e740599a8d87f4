"""The Ray engine gives the local engine's outputs: on a local Ray instance (2 CPUs, no GPU), and on a real
two-node cluster started with ``ray start`` on loopback, as the README tells users to run it."""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import ray
from jobs_helpers import FACES, LONG, longer, outcome, same_media, summary, write

from gpen_video.cli import main
from gpen_video.config import Config
from gpen_video.errors import ClusterError, ConfigError
from gpen_video.jobs import engine_ray
from gpen_video.jobs.engine_ray import RayEngine, actor_device, actor_threads, host_port

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray instance of 2 CPUs and one (declared) GPU, shared by the tests that need one."""
    ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


@pytest.mark.slow
def test_ray_engine_matches_local_engine(tmp_path: Path, local_ray) -> None:
    src = tmp_path / "src"
    write(src, "long.mov", longer(LONG, 72))  # three 1-second segments
    write(src / "faces", "faces.mov", FACES)  # real faces across a segment boundary
    # two engines must give byte-identical files (ProRes here; x264 through Ray in test_determinism.py)
    common = ["--model", "identity", "--device", "cpu", "--segment-seconds", "1", "--video-codec", "prores_ks", "-q"]
    assert main(["batch", str(src), "-o", str(tmp_path / "local"), *common]) == 0
    rc = main(["batch", str(src), "-o", str(tmp_path / "ray"), "--engine", "ray", *common,
               "--summary", str(tmp_path / "ray.json")])  # fmt: skip
    assert rc == 0
    data = summary(tmp_path / "ray.json")
    assert data["engine"] == "ray" and data["counts"]["done"] == 2
    assert outcome(data, "long.mov")["segments_computed"] == [0, 1, 2]
    assert outcome(data, "faces.mov")["segments"] == 2 and outcome(data, "faces.mov")["faces_restored"] > 0
    for name in ("long.mov", "faces/faces.mov"):
        same_media(tmp_path / "ray" / name, tmp_path / "local" / name)
        assert (tmp_path / "ray" / name).read_bytes() == (tmp_path / "local" / name).read_bytes()


@pytest.mark.slow
def test_actors_get_the_device_kind_and_the_threads_the_driver_meant(local_ray) -> None:
    """--device tensorrt stays tensorrt in the actor (it was cuda), and the actor keeps its share of the node's
    cores: 2 CPUs for the one GPU, where Ray alone would set OMP_NUM_THREADS=1 for a num_cpus=1 actor."""
    config = Config()
    config.restore.device = "tensorrt:0"
    engine = RayEngine(config)
    try:
        assert engine.capacity == 1 and engine.gpu
        seen = ray.get(engine._idle[0].describe.remote())
    finally:
        engine.close()
    assert seen["device"] == "tensorrt"
    assert seen["threads"] == 2 and seen["omp"] == "2"


def test_actor_device_and_threads_follow_the_request_and_the_nodes() -> None:
    assert actor_device("tensorrt:1", gpu=True) == "tensorrt" and actor_device("trt", gpu=True) == "tensorrt"
    assert actor_device("cuda:3", gpu=True) == "cuda" and actor_device("auto", gpu=True) == "cuda"
    assert actor_device("auto", gpu=False) == "cpu" and actor_device("cpu", gpu=False) == "cpu"
    assert engine_ray.wants_gpu("tensorrt:1", 2) and engine_ray.wants_gpu("trt", 1)
    gpu_node = {"Alive": True, "Resources": {"CPU": 32.0, "GPU": 4.0}}
    lean_gpu_node = {"Alive": True, "Resources": {"CPU": 8.0, "GPU": 2.0}}
    head = {"Alive": True, "Resources": {"CPU": 2.0}}
    dead = {"Alive": False, "Resources": {"CPU": 1.0, "GPU": 8.0}}
    assert actor_threads([gpu_node, head, dead], gpu=True, actors=4) == 8
    assert actor_threads([gpu_node, lean_gpu_node, head], gpu=True, actors=6) == 4  # the leanest GPU node
    assert actor_threads([gpu_node, head], gpu=False, actors=34) == 1  # one actor per CPU
    assert actor_threads([gpu_node, head], gpu=False, actors=2) == 2  # never more than the smallest node has


def test_an_address_is_used_as_given() -> None:
    """Ray 2.60 turns a loopback head address into this machine's interface address; not while we connect."""
    from ray._private import services

    real = services.resolve_ip_for_localhost
    with engine_ray.exact_address():
        assert services.canonicalize_bootstrap_address("127.0.0.1:6379") == "127.0.0.1:6379"
    assert services.resolve_ip_for_localhost is real
    assert host_port("127.0.0.1:6379") == ("127.0.0.1", 6379) and host_port("[::1]:6379") == ("::1", 6379)
    assert host_port("auto") is None and host_port("ray://head:10001") is None
    with pytest.raises(ConfigError, match="HOST:PORT"):
        host_port("head")


def test_a_cluster_that_is_not_there_or_refuses_the_token_is_one_line(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setattr(ray, "is_initialized", lambda: False)  # the driver joins, even beside the module's Ray
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp_path / "c.mp4").write_bytes(b"\0" * 64)  # the engine is made before any input is read
    rc = main(["batch", str(tmp_path / "c.mp4"), "-o", str(tmp_path / "out"), "--engine", "ray",
               "--address", f"127.0.0.1:{port}", "-q"])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err
    assert f"nothing listens at 127.0.0.1:{port}" in err and "ray start --head" in err
    # what ray.init raises on a refused token (seen on Ray 2.60): a ConnectionError over the GCS client's error
    refused = ConnectionError("Failed to connect to Ray cluster at 127.0.0.1:6379")
    refused.__cause__ = RuntimeError("Failed to connect to GCS. ... Unauthenticated: RPC error: InvalidAuthToken")
    error = engine_ray._refused(refused, "127.0.0.1:6379")
    assert isinstance(error, ClusterError) and "refused this driver's token" in str(error)
    assert "RAY_AUTH_MODE=token" in str(error)


# ---------------------------------------------------------------------------------------------------
# A real cluster, as users run it: `ray start --head`, `ray start --address` for a second node, token
# authentication on, and `gpen-video batch --engine ray --address`. Everything runs inside a network namespace
# that has only loopback, and a PID namespace, so the nodes, their ports and `ray stop` touch nothing outside,
# and every process of the cluster ends when the namespace does.

CLUSTER = """
set -u
ip link set lo up
mkdir -p /tmp/ray && mount -t tmpfs tmpfs /tmp/ray   # this cluster's session files only
ray() {{ {python} -m ray.scripts.scripts "$@"; }}
batch() {{ {python} -m gpen_video batch {src} --engine ray --address 127.0.0.1:6379 {common} "$@"; }}
ray start --head --node-ip-address 127.0.0.1 --port 6379 --num-cpus 1 --include-dashboard false > head.log 2>&1
ray start --address 127.0.0.1:6379 --node-ip-address 127.0.0.1 --num-cpus 1 > node.log 2>&1
echo $? > node.rc
# a driver with the wrong token is refused in one line (Ray retries for 20 s unless told otherwise)
RAY_AUTH_TOKEN=not-the-token RAY_gcs_server_port_wait_time_s=1 batch -o {tmp}/wrong 2> wrong.err
echo $? > wrong.rc
batch -o {tmp}/ray --summary {tmp}/ray.json 2> driver.err
echo $? > driver.rc
ray stop --force > /dev/null 2>&1
"""


def _namespaces_work() -> str:
    """Why the cluster test cannot run here ("" where it can)."""
    try:
        probe = subprocess.run(["unshare", "--net", "--pid", "--fork", "--mount-proc", "ip", "link", "set", "lo", "up"],
                               capture_output=True, text=True, timeout=30)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unshare or ip is not available ({exc})"
    return "" if probe.returncode == 0 else f"cannot make a network namespace: {probe.stderr.strip()}"


@pytest.mark.slow
def test_two_node_cluster_on_loopback_with_tokens_matches_the_local_engine(tmp_path: Path) -> None:
    why = _namespaces_work()
    if why:
        pytest.skip(why)
    src = tmp_path / "src"
    write(src, "long.mov", longer(LONG, 48))  # two 1-second segments, one for each node
    common = ["--model", "identity", "--device", "cpu", "--segment-seconds", "1", "--video-codec", "prores_ks", "-q"]
    assert main(["batch", str(src), "-o", str(tmp_path / "local"), *common]) == 0
    home = tmp_path / "home"  # the token lives here, not in the user's ~/.ray
    (home / ".ray").mkdir(parents=True)
    (home / ".ray" / "auth_token").write_text("b7c6" * 16)  # as `ray get-auth-token --generate` writes it
    script = CLUSTER.format(python=shlex.quote(sys.executable), src=shlex.quote(str(src)),
                            tmp=shlex.quote(str(tmp_path)), common=shlex.join(common))  # fmt: skip
    env = {**os.environ, "HOME": str(home), "RAY_AUTH_MODE": "token", "RAY_USAGE_STATS_ENABLED": "0",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}  # fmt: skip
    for name in ("RAY_ADDRESS", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        env.pop(name, None)
    run = subprocess.run(["unshare", "--net", "--pid", "--fork", "--mount-proc", "--kill-child", "bash", "-c", script],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    logs = {n: (tmp_path / n).read_text() for n in ("node.log", "wrong.err", "driver.err") if (tmp_path / n).exists()}
    assert (tmp_path / "node.rc").read_text().strip() == "0", (run.stderr, logs)
    wrong = (tmp_path / "wrong.err").read_text().strip()
    assert (tmp_path / "wrong.rc").read_text().strip() == "2" and "\n" not in wrong, logs
    assert "refused this driver's token" in wrong and "RAY_AUTH_MODE=token" in wrong
    assert (tmp_path / "driver.rc").read_text().strip() == "0", (run.stderr, logs)
    row = outcome(summary(tmp_path / "ray.json"), "long.mov")
    assert row["status"] == "done" and sorted(row["segment_nodes"]) == ["0", "1"]
    assert len(set(row["segment_nodes"].values())) == 2, json.dumps(row)  # one segment on each node
    same_media(tmp_path / "ray" / "long.mov", tmp_path / "local" / "long.mov")
    assert (tmp_path / "ray" / "long.mov").read_bytes() == (tmp_path / "local" / "long.mov").read_bytes()
