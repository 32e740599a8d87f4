"""End to end with a small random GPEN checkpoint: structure kept, faces restored, batching, memory, preview."""

from __future__ import annotations

import json
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest
from media_checks import frame_times, side_packets, video_planes
from model_helpers import random_state_dict, save_checkpoint

from gpen_video.config import load_config
from gpen_video.restore.restorer import Restorer
from gpen_video.run import RestoreJob, run_restore
from gpen_video.synthetic import TWO_FACES, AudioTrack, ClipSpec, FaceScene, write_clip

pytestmark = pytest.mark.slow  # every test here restores whole clips (seconds to a minute each on 2 cores)


@pytest.fixture(scope="module")
def gpen_64(tmp_path_factory) -> Path:
    """A GPEN generator at 64 px, random weights, saved as a plain state_dict like the released files."""
    path = tmp_path_factory.mktemp("ckpt") / "gpen-64.pth"
    return save_checkpoint(random_state_dict(64, channel_multiplier=1, narrow=0.5, n_mlp=2), path)


@pytest.fixture(scope="module")
def cut_clip(tmp_path_factory) -> Path:
    """Two faces for 12 frames, a hard cut to a faceless shot; VFR, lossless FFV1, FLAC audio.

    Two faces (not the photo's six): five runs restore this clip and their time is the faces', and two a
    frame still make every batch of 5 span frames."""
    spec = ClipSpec(
        scene=FaceScene(width=640, height=360, frames=24, cut_at=12, faces_after_cut=False, photo_region=TWO_FACES),
        codec="ffv1", pix_fmt="yuv420p", vfr=True, audio=(AudioTrack(codec="flac"),),
    )  # fmt: skip
    return write_clip(tmp_path_factory.mktemp("clips") / "cut.mkv", spec)


@pytest.fixture(scope="module")
def restored_cut(cut_clip, gpen_64, run_cli, tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("out")
    outputs = {}
    for batch in (1, 5):
        out = out_dir / f"b{batch}.mkv"
        report = out_dir / f"b{batch}.json"
        r = run_cli("restore", cut_clip, "-o", out, "--model", gpen_64, "--batch-size", batch, "--report", report, "-q")
        assert r.returncode == 0, r.stderr
        outputs[batch] = (out, json.loads(report.read_text()))
    return outputs


def test_structure_is_kept(cut_clip, restored_cut):
    out, _ = restored_cut[5]
    assert frame_times(out) == frame_times(cut_clip)
    assert side_packets(out) == side_packets(cut_clip)


def test_faces_are_restored_and_faceless_frames_untouched(cut_clip, restored_cut):
    out, _ = restored_cut[5]
    pairs = zip(video_planes(cut_clip), video_planes(out), strict=True)
    changed = [any((a != b).any() for a, b in zip(x, y, strict=True)) for x, y in pairs]
    assert all(changed[:12]), "every frame with faces has restored pixels"
    assert not any(changed[12:]), "frames without a face are the input's samples, bit for bit (lossless)"


def test_report_counts(restored_cut):
    _, report = restored_cut[5]
    assert report["frames_read"] == report["frames_written"] == 24
    assert report["faces"]["frames_with_faces"] == 12
    tracks = report["faces"]["tracks"]
    rows = sum(t["frames"] for t in tracks)  # a count per track (the rows themselves go to --tracks)
    assert report["faces"]["faces_restored"] == rows > 0
    assert all(t["last_frame"] < 12 for t in tracks), "no track reaches into the faceless shot"
    assert 12 in report["faces"]["scene_cuts"]
    assert report["restore"]["batch_size"] == 5 and report["restore"]["batches"] >= rows // 5
    assert report["restore"]["forward_batch"] == 5, "--batch-size is the batch the network really runs"
    assert report["flicker"]["frame_pairs"] == 11
    assert report["flicker"]["input"] is not None and report["flicker"]["output"] is not None
    assert set(report["stage_seconds"]) >= {"decode", "faces", "restore", "compose", "encode"}
    assert report["bounding_stage"] in report["stage_seconds"]
    bound = report["stage_seconds"][report["bounding_stage"]]
    assert report["bounding_ms_per_frame"] == pytest.approx(1000 * bound / report["frames_written"], abs=0.01)
    assert report["hint"] is None  # a CPU run: the host has no GPU to hold back


def test_a_gpu_run_the_host_holds_back_gets_one_line_saying_so():
    """The report's hint: where a GPU run is bounded by a host stage, which one and its ms per frame against the
    network's; nothing where the network bounds it, or on a CPU."""
    from gpen_video.run.report import StageTimes, host_bound_hint

    host_bound = StageTimes({"decode": 1.0, "faces": 4.0, "restore": 2.0, "compose": 1.5})
    hint = host_bound_hint(host_bound, 100, "cuda:0")
    assert hint is not None and "\n" not in hint
    assert "faces is busy 40.0 ms a frame, the network 20.0" in hint
    assert host_bound_hint(host_bound, 100, "cpu") is None
    assert host_bound_hint(StageTimes({"faces": 1.0, "restore": 3.0}), 100, "cuda") is None


def test_batched_across_frames_equals_batch_one(restored_cut):
    one, _ = restored_cut[1]
    five, _ = restored_cut[5]
    for x, y in zip(video_planes(one), video_planes(five), strict=True):
        for a, b in zip(x, y, strict=True):
            assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


class _FailingRestorer(Restorer):
    size = 64
    name = "failing"

    def __init__(self) -> None:
        self.calls = 0

    def restore(self, faces: np.ndarray) -> np.ndarray:
        self.calls += 1
        if self.calls == 3:
            raise RuntimeError("simulated restorer failure")
        return faces.copy()


def test_a_stage_failure_leaves_nothing(cut_clip, tmp_path):
    out = tmp_path / "fail.mkv"
    config = load_config("default", {"restore.batch_size": 2})
    with pytest.raises(RuntimeError, match="simulated"):
        run_restore(RestoreJob(cut_clip, out, config, restorer=_FailingRestorer()))
    assert list(tmp_path.iterdir()) == []


_MEASURE = """
import sys
from pathlib import Path
from gpen_video.config import load_config
from gpen_video.run import RestoreJob, run_restore

def rss_mib():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024

samples = []
config = load_config("default", {"restore.model": sys.argv[3], "output.video_codec": "libx264",
                                 "output.preset": "ultrafast"})
job = RestoreJob(Path(sys.argv[1]), Path(sys.argv[2]), config, progress=lambda n: samples.append(rss_mib()))
run_restore(job)
print(" ".join(f"{s:.1f}" for s in samples))
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads resident memory from /proc (Linux)")
def test_peak_memory_does_not_grow_with_length(gpen_64, tmp_path):
    """Resident memory over the last third of a 120-frame run stays near that of frames 20-40.

    The faces keep their size (no zoom), so late frames cost what early ones do and any rise is the run's
    length, not its content (with a zoom in, bigger faces late in the clip rightly take more memory).
    Two faces (a two-shot of the photo) instead of six, and 120 frames instead of 180: the run's time is the
    faces' (~0.17 CPU-s a face a frame with this GPEN, at the CPU micro-batch of 4), so this costs a third of
    what it did, and memory held per frame (decoded pictures, tracks, crops) is what the test is for, not memory
    per face.
    History: without pinning glibc's mmap threshold 943 -> 1109 MB; MTCNN's ONNX Runtime arena stepped up
    ~70 MB at one key frame (MTCNN now runs without arena). The bound catches a per-frame leak of more than
    ~1 MB (60 frames or more between the windows), e.g. keeping every decoded 480x270 frame and its BGR copy.
    """
    scene = FaceScene(width=480, height=270, frames=120, zoom=(1.25, 1.25), photo_region=TWO_FACES)
    src = write_clip(tmp_path / "long.mp4", ClipSpec(scene=scene, audio=()))
    proc = subprocess.run([sys.executable, "-c", _MEASURE, str(src), str(tmp_path / "o.mp4"), str(gpen_64)],
                          capture_output=True, text=True, check=True)  # fmt: skip
    samples = [float(x) for x in proc.stdout.split()]
    assert len(samples) == 120
    early, late = max(samples[20:40]), max(samples[100:])
    assert late - early < 60, (early, late, samples[::10])


def test_preview_writes_three_outputs_and_starts_mid_file(gpen_64, run_cli, tmp_path):
    src = write_clip(
        tmp_path / "long.mp4",
        ClipSpec(scene=FaceScene(width=480, height=270, frames=240, zoom=(1.2, 1.3)), codec_options={"g": "12"},
                 audio=(AudioTrack(),)),
    )  # fmt: skip
    prefix = tmp_path / "pv"
    report = tmp_path / "pv.json"
    r = run_cli("preview", src, "--start", "8.0", "--duration", "0.5", "--model", gpen_64, "-o", prefix,
                "--compare", "split", "--report", report, "-q")  # fmt: skip
    assert r.returncode == 0, r.stderr
    restored, compare, sheet = (Path(f"{prefix}.{name}") for name in ("restored.mp4", "compare.mp4", "faces.png"))
    times_in = [t for t in frame_times(src) if Fraction(8) <= t < Fraction(17, 2)]
    assert frame_times(restored) == [t - times_in[0] for t in times_in]
    assert frame_times(compare) == frame_times(restored)
    assert len(side_packets(compare)[0][2]) > 0, "the comparison clip carries the audio"
    image = cv2.imread(str(sheet))
    assert image is not None and image.shape[0] >= 192 and image.shape[1] >= 384
    data = json.loads(report.read_text())
    # it seeks to the key frame before its warm-up (from the sync frame at 4 s, less the scene-cut history), not to
    # frame 0, and decodes the range and the faces stage's look-ahead past it: about 5 s of the 8.5
    assert 24 * 4.5 < data["frames_decoded"] < 24 * 6, "the preview decodes from its warm-up, not from frame 0"
    assert data["frames_written"] == 12


def test_threaded_and_sequential_runs_give_identical_output(cut_clip, gpen_64, tmp_path):
    config = load_config("default", {"restore.model": str(gpen_64), "restore.batch_size": 3})
    threaded, sequential = tmp_path / "t.mkv", tmp_path / "s.mkv"
    one = run_restore(RestoreJob(cut_clip, threaded, config), threaded=True)
    other = run_restore(RestoreJob(cut_clip, sequential, config), threaded=False)
    for x, y in zip(video_planes(threaded), video_planes(sequential), strict=True):
        for a, b in zip(x, y, strict=True):
            assert (a == b).all()
    # stages one after another: each one's process CPU time is its own (bench/host_bench.py's per-stage figures);
    # in a threaded run the stages overlap and no CPU figure is given
    assert one.stage_cpu_seconds == {}
    assert set(other.stage_cpu_seconds) == set(other.stage_seconds) >= {"decode", "faces", "restore", "compose"}
    assert all(v >= 0 for v in other.stage_cpu_seconds.values()) and other.stage_cpu_seconds["faces"] > 0
    assert one.first_decoded_at is not None and one.started <= one.first_decoded_at


def _max_level_difference(a_path: Path, b_path: Path) -> int:
    pairs = zip(video_planes(a_path), video_planes(b_path), strict=True)
    return max(int(np.abs(a.astype(int) - b.astype(int)).max()) for x, y in pairs for a, b in zip(x, y, strict=True))


@pytest.fixture(scope="module")
def ten_bit_clip(tmp_path_factory) -> Path:
    spec = ClipSpec(scene=FaceScene(width=480, height=270, frames=8, zoom=(1.2, 1.3)), codec="ffv1",
                    pix_fmt="yuv422p10le", audio=())  # fmt: skip
    return write_clip(tmp_path_factory.mktemp("ten") / "ten.mkv", spec)


@pytest.mark.parametrize("clip_name", ["cut_clip", "ten_bit_clip"])
def test_device_path_twin_matches_numpy_path(clip_name, request, tmp_path):
    """The torch path (upload once, warp, restore, paste back on the device) run on CPU tensors."""
    clip = request.getfixturevalue(clip_name)
    outputs = {}
    for choice in ("off", "on"):
        out = tmp_path / f"{choice}.mkv"
        config = load_config("default", {"restore.model": "identity", "restore.device_path": choice})
        report = run_restore(RestoreJob(clip, out, config))
        assert report.faces.faces_restored > 0
        # the detector goes where the frames stay: on the device path its graphs run in torch (here on the CPU)
        assert report.faces.found.detector_device == ("cpu" if choice == "off" else report.restore.device)
        outputs[choice] = out
    assert frame_times(outputs["on"]) == frame_times(clip)
    assert _max_level_difference(outputs["off"], outputs["on"]) <= 2


def test_fused_crops_reach_the_restorer_on_both_paths(tmp_path):
    """With ``fusion.frames``, the restorer's crops are cut from the fused frame on the host path and on the device
    path's twin alike (16-bit samples of a noisy clip here), what the identity restorer gives back differs from a
    plain run, and the faces flicker less from frame to frame (measured in their own aligned geometry)."""
    spec = ClipSpec(scene=FaceScene(width=480, height=270, frames=8, zoom=(1.2, 1.3), degrade=1.0), codec="ffv1",
                    pix_fmt="yuv422p10le", audio=())  # fmt: skip
    ten_bit_clip = write_clip(tmp_path / "noisy10.mkv", spec)
    outputs, reports = {}, {}
    for name, frames, choice in (("plain", 0, "off"), ("off", 2, "off"), ("on", 2, "on")):
        out = tmp_path / f"{name}.mkv"
        config = load_config("default", {"restore.model": "identity", "restore.device_path": choice,
                                         "fusion.frames": frames, "compose.blend": 1.0,
                                         "faces.tracks": str(tmp_path / f"{name}.jsonl")})  # fmt: skip
        reports[name] = run_restore(RestoreJob(ten_bit_clip, out, config))
        outputs[name] = out
    fusion = reports["off"].fusion
    assert fusion is not None and fusion.faces == reports["off"].faces.faces_restored > 0
    assert fusion.weight_sum is not None and fusion.weight_sum > 1.5 and len(fusion.tracks) >= 1
    assert _max_level_difference(outputs["off"], outputs["on"]) <= 2
    assert _max_level_difference(outputs["plain"], outputs["off"]) > 2
    plain, fused = ([json.loads(line) for line in (tmp_path / f"{name}.jsonl").open()] for name in ("plain", "off"))
    weights = [row.pop("fusion_weight") for row in fused]  # the rows are the plain run's, plus each face's weight
    assert fused == plain and len(weights) == fusion.faces and all(1.0 <= w <= 5.0 for w in weights)
    plain_flicker, fused_flicker = reports["plain"].face_flicker, reports["off"].face_flicker
    assert plain_flicker is not None and fused_flicker is not None and fused_flicker.frame_pairs > 0
    assert fused_flicker.input == plain_flicker.input and fused_flicker.output < 0.8 * plain_flicker.output


def test_device_path_with_gpen(cut_clip, gpen_64, tmp_path):
    config = load_config("default", {"restore.model": str(gpen_64), "restore.device_path": "on"})
    out = tmp_path / "gpen.mkv"
    report = run_restore(RestoreJob(cut_clip, out, config))
    assert report.restore.device == "cpu" and report.faces.faces_restored > 0
    pairs = zip(video_planes(cut_clip), video_planes(out), strict=True)
    changed = [any((a != b).any() for a, b in zip(x, y, strict=True)) for x, y in pairs]
    assert all(changed[:12]) and not any(changed[12:])


@pytest.mark.gpu
def test_device_path_on_cuda_matches_cpu(cut_clip, gpen_64, tmp_path):
    outputs = {}
    for device in ("cpu", "cuda"):
        out = tmp_path / f"{device}.mkv"
        config = load_config("default", {"restore.model": str(gpen_64), "restore.device": device,
                                         "restore.precision": "fp32", "restore.device_path": "auto"})  # fmt: skip
        run_restore(RestoreJob(cut_clip, out, config))
        outputs[device] = out
    assert _max_level_difference(outputs["cpu"], outputs["cuda"]) <= 3
