"""The Ray engine on a local Ray instance (2 CPUs, no GPU) gives the local engine's outputs."""

from __future__ import annotations

from pathlib import Path

import pytest
import ray
from jobs_helpers import FACES, LONG, longer, outcome, same_media, summary, write

from gpen_video.cli import main


@pytest.mark.slow
def test_ray_engine_matches_local_engine(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write(src, "long.mov", longer(LONG, 72))  # three 1-second segments
    write(src / "faces", "faces.mov", FACES)  # real faces across a segment boundary
    # two engines must give byte-identical files (ProRes here; x264 through Ray in test_determinism.py)
    common = ["--model", "identity", "--segment-seconds", "1", "--video-codec", "prores_ks", "-q"]
    assert main(["batch", str(src), "-o", str(tmp_path / "local"), *common]) == 0
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        rc = main(["batch", str(src), "-o", str(tmp_path / "ray"), "--engine", "ray", *common,
                   "--summary", str(tmp_path / "ray.json")])  # fmt: skip
    finally:
        ray.shutdown()
    assert rc == 0
    data = summary(tmp_path / "ray.json")
    assert data["engine"] == "ray" and data["counts"]["done"] == 2
    assert outcome(data, "long.mov")["segments_computed"] == [0, 1, 2]
    assert outcome(data, "faces.mov")["segments"] == 2 and outcome(data, "faces.mov")["faces_restored"] > 0
    for name in ("long.mov", "faces/faces.mov"):
        same_media(tmp_path / "ray" / name, tmp_path / "local" / name)
        assert (tmp_path / "ray" / name).read_bytes() == (tmp_path / "local" / name).read_bytes()
