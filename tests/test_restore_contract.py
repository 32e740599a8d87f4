"""The restorer contract: typed device/precision, one loader, the frame path chosen from what a restorer
declares (never probed), the batch the network really runs, side packets merged by time, one 8-bit rule."""

from __future__ import annotations

import ast
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from model_helpers import random_faces, random_state_dict

from gpen_video.config import RestoreConfig
from gpen_video.errors import ConfigError, ModelError
from gpen_video.io.colour import to_8bit
from gpen_video.io.side_packets import SidePackets
from gpen_video.models import load_generator
from gpen_video.models import load_restorer as load_for_scripts
from gpen_video.models.loader import load_restorer
from gpen_video.models.torch_backend import TorchRestorer
from gpen_video.ort_session import ort_session
from gpen_video.restore.device import CPU, Device, Precision, parse_device, resolve_device, resolve_precision
from gpen_video.restore.restorer import DeviceRestorer, IdentityRestorer, Restorer
from gpen_video.run.frame_path import DevicePath, HostPath, choose_path
from gpen_video.run.records import Aligned
from gpen_video.run.restore_stage import CrossFrameBatcher

PACKAGE = Path(__file__).resolve().parent.parent / "gpen_video"


def test_device_and_precision_are_typed_once():
    assert parse_device("auto") is None
    assert parse_device("CPU") == CPU and str(parse_device("cuda:1")) == "cuda:1"
    assert parse_device("cuda") == Device("cuda") and parse_device("cuda:1") == Device("cuda", 1)
    for bad in ("tpu", "cuda:x", "cpu:0", ""):
        with pytest.raises(ConfigError, match="auto, cpu, cuda or cuda:N"):
            parse_device(bad)
    assert resolve_device("auto") == (Device("cuda") if torch.cuda.is_available() else CPU)
    assert resolve_precision("auto", CPU) is Precision.FP32
    assert resolve_precision("BF16", CPU) is Precision.BF16 and Precision.BF16.torch_dtype == torch.bfloat16
    assert Precision.of(torch.float16) is Precision.FP16 and str(Precision.FP16) == "fp16"
    with pytest.raises(ConfigError, match="fp32, fp16 or bf16"):
        resolve_precision("int8", CPU)


def test_one_loader_for_identity_and_scripts():
    restorer = load_restorer(RestoreConfig(model="identity", identity_size=96, device="auto"))
    assert isinstance(restorer, IdentityRestorer) and restorer.size == 96
    assert restorer.device == CPU, "a dry run computes nothing: auto is the CPU, no GPU probed"
    assert load_restorer(RestoreConfig(model="identity"), device="cuda:1").device == Device("cuda", 1)
    scripted = load_for_scripts("identity", identity_size=32)
    assert type(scripted) is IdentityRestorer and scripted.size == 32


def test_torch_restorer_declares_its_contract():
    sd = random_state_dict(64, 2, 0.125, 2, style_dim=32, seed=44)
    restorer = TorchRestorer(load_generator(sd)[0], device="cpu", precision="fp32")
    assert isinstance(restorer, DeviceRestorer)
    assert restorer.device == CPU and restorer.precision is Precision.FP32
    assert restorer.name == "gpen-64 torch cpu fp32"
    assert restorer.forward_limit() is None, "the batch a caller gives runs as one forward"
    sizes: list[int] = []
    real = restorer._forward

    def counting(x):
        sizes.append(x.shape[0])
        return real(x)

    restorer._forward = counting
    faces = random_faces(5, 64, seed=11)
    host = restorer.restore(faces)
    device = restorer.restore_on_device(torch.from_numpy(faces)).numpy()
    assert sizes == [5, 5] and np.array_equal(host, device)


class _HostOnly(Restorer):
    size = 16
    name = "host-only"

    def restore(self, batch: np.ndarray) -> np.ndarray:
        return batch.copy()


def test_frame_path_follows_the_declared_contract():
    identity = IdentityRestorer(16)
    assert isinstance(choose_path(identity, "auto"), HostPath), "auto stays on the host off CUDA"
    assert isinstance(choose_path(identity, "on"), DevicePath)
    assert isinstance(choose_path(identity, "off"), HostPath)
    assert isinstance(choose_path(_HostOnly(), "auto"), HostPath)
    with pytest.raises(ConfigError, match="host-only takes host arrays only"):
        choose_path(_HostOnly(), "on")
    with pytest.raises(ConfigError, match="auto, on or off"):
        choose_path(identity, "sometimes")
    assert _HostOnly().device is None and _HostOnly().preferred_batch() == 4


class _Limited(Restorer):
    """Runs at most ``limit`` faces a forward (as an out-of-memory back-off or a fixed-batch file would)."""

    size = 8
    name = "limited"

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.calls: list[int] = []

    def forward_limit(self) -> int | None:
        return self.limit

    def restore(self, batch: np.ndarray) -> np.ndarray:
        self.calls.append(len(batch))
        return 255 - batch


def _aligned(path: HostPath, index: int, faces: int) -> Aligned:
    from gpen_video.io.reader import Frame
    from gpen_video.run.frame_path import FaceCrops

    frame = Frame(index, index, Fraction(1, 25), av.VideoFrame(8, 8, "yuv420p"))
    crops = np.full((faces, 8, 8, 3), index, np.uint8)
    return Aligned(frame, True, np.zeros((8, 8, 3), np.uint8), FaceCrops(crops, crops, np.zeros((faces, 2, 3)), crops))


@pytest.mark.parametrize(("limit", "forward"), [(None, 6), (2, 2)])
def test_batcher_reports_the_batch_the_network_ran(limit, forward):
    restorer = _Limited(limit)
    path = HostPath(restorer)
    batcher = CrossFrameBatcher(path, batch_size=6)
    items = [_aligned(path, i, 3) for i in range(5)]  # 15 faces: frames 0-1 and 2-3 fill a batch, 4 is the rest
    out = [r for item in items for r in batcher.process(item)] + list(batcher.finish())
    assert [r.aligned.frame.index for r in out] == [0, 1, 2, 3, 4], "frames leave in order"
    # every batch the restorer gets has the batch's shape: the last is padded (its padding's results dropped)
    assert restorer.calls == [6, 6, 6] and batcher.batches == 3 and batcher.faces_restored == 15
    assert batcher.largest_forward == forward
    for r in out:
        assert r.crops is not None and (r.crops == 255 - r.aligned.frame.index).all()


def test_a_face_comes_out_the_same_whatever_its_batch_holds():
    """GPEN's torch forward on a CPU differs in the last bits between batch shapes (a face restored in a batch of
    four against alone), so the batcher gives the restorer one shape: the same faces restored in batches the idle
    inbox cut early, and in full ones, come out sample for sample the same."""
    size = 64
    restorer = TorchRestorer(load_generator(random_state_dict(size, channel_multiplier=1, narrow=0.5))[0])
    path = HostPath(restorer)
    faces = random_faces(7, size, seed=3)
    counts = [1, 2, 1, 3]

    def run(idle: bool) -> list[np.ndarray]:
        from gpen_video.io.reader import Frame
        from gpen_video.run.frame_path import FaceCrops

        batcher, out, start = CrossFrameBatcher(path, batch_size=4), [], 0
        for index, count in enumerate(counts):
            crops = faces[start : start + count]
            start += count
            frame = Frame(index, index, Fraction(1, 25), av.VideoFrame(8, 8, "yuv420p"))
            item = Aligned(
                frame, True, np.zeros((8, 8, 3), np.uint8), FaceCrops(crops, crops, np.zeros((count, 2, 3)), crops)
            )
            out += batcher.process(item)
            if idle:  # the restore stage's inbox was empty: what is held goes now
                out += batcher.idle()
        out += batcher.finish()
        return [r.crops for r in out]

    alone, together = run(idle=True), run(idle=False)
    assert [len(c) for c in alone] == counts
    for a, b in zip(alone, together, strict=True):
        assert np.array_equal(a, b)


def _packet(ts: int | None, tb: Fraction = Fraction(1, 1000)) -> av.Packet:
    packet = av.Packet(b"x")
    if ts is not None:
        packet.dts = packet.pts = ts
        packet.time_base = tb
    return packet


def test_side_packets_are_merged_by_time_and_keep_each_streams_order():
    """Packets come out by decode time; one without a time takes its stream's previous one (it is next in decode
    order), and none is moved before its stream's previous packet (a muxer refuses decode times out of order).
    Packets made here have no stream, so they count as one stream."""
    side = SidePackets()
    early, untimed, other_base, late = _packet(100), _packet(None), _packet(3, Fraction(1, 10)), _packet(900)
    side.put([early, untimed, other_base, late])  # 0.1, -, 0.3, 0.9 s
    assert side.due(Fraction(1, 20)) == []
    assert side.due(Fraction(1, 5)) == [early, untimed]
    assert side.due(Fraction(1, 2)) == [other_base]
    assert side.due(Fraction(1, 2)) == []
    back = _packet(200)  # demuxed after the 0.9 s packet: it stays after it
    side.put([back])
    assert side.due(Fraction(1, 2)) == []
    assert side.rest() == [late, back] and side.rest() == []


def test_one_eight_bit_rule_on_host_and_device():
    eight = np.arange(256, dtype=np.uint8).reshape(16, 16)
    assert to_8bit(eight) is eight
    sixteen = np.array([0, 255, 256, 65535, 40000], np.uint16)
    assert to_8bit(sixteen).tolist() == [0, 0, 1, 255, 156]
    as_int32 = torch.from_numpy(sixteen.astype(np.int32))  # how 16-bit frames travel on a device
    assert to_8bit(as_int32).tolist() == [0, 0, 1, 255, 156] and to_8bit(as_int32).dtype == torch.uint8
    with pytest.raises(ValueError):
        to_8bit(np.zeros(2, np.float32))


def test_ort_session_factory_names_a_bad_file(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(ModelError, match=r"cannot load .*bad\.onnx: not a usable ONNX face detector \("):
        ort_session(bad, what="ONNX face detector")
    with pytest.raises(ModelError, match="not found"):
        ort_session(tmp_path / "missing.onnx")


def _probes_of_restorers(tree: ast.AST) -> list[int]:
    lines = []
    for node in ast.walk(tree):
        call = isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
        probe = call and node.func.id in ("getattr", "hasattr")
        if probe and node.args and "restorer" in ast.unparse(node.args[0]).lower():
            lines.append(node.lineno)
    return lines


def test_no_module_probes_a_restorer():
    probes = {}
    for path in PACKAGE.rglob("*.py"):
        found = _probes_of_restorers(ast.parse(path.read_text(encoding="utf-8")))
        if found:
            probes[str(path.relative_to(PACKAGE))] = found
    assert probes == {}, "restorers declare what they offer (restore.restorer); nothing probes them"
