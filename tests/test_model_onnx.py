"""ONNX export and the onnxruntime backend: same I/O as the official/FaceFusion files, same output as PyTorch."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from model_helpers import random_faces, random_state_dict, reference_restore, save_checkpoint

from gpen_video.errors import ConfigError, DependencyError, ModelError
from gpen_video.models import load_generator, load_restorer
from gpen_video.models.onnx_backend import OnnxRestorer, providers_for
from gpen_video.models.onnx_export import export_onnx
from gpen_video.restore.device import Precision

# the fixed-batch and non-GPEN files below are made with the legacy exporter directly, which warns a lot
pytestmark = pytest.mark.filterwarnings(
    "ignore::DeprecationWarning", "ignore::UserWarning", "ignore::torch.jit.TracerWarning"
)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("onnx")
    sd = random_state_dict(64, 2, 0.125, 2, seed=31, style_dim=32)
    ckpt = save_checkpoint(sd, folder / "GPEN-test-64.pth")
    result = export_onnx(ckpt, folder / "gpen_test_64.onnx", check=True)
    return sd, ckpt, result


def test_export_io_names_and_dynamic_batch(exported):
    _, _, result = exported
    model = onnx.load(str(result.path))
    (inp,) = model.graph.input
    (out,) = model.graph.output
    assert inp.name == "input" and out.name == "output"
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    assert dims[1:] == [3, 64, 64] and isinstance(dims[0], str)
    assert result.max_abs_diff is not None and result.max_abs_diff < 1e-4


def test_onnxruntime_matches_pytorch_and_reference(exported):
    sd, ckpt, result = exported
    faces = random_faces(3, 64, seed=4)
    ort_restorer = load_restorer(str(result.path))
    assert isinstance(ort_restorer, OnnxRestorer) and ort_restorer.size == 64
    assert ort_restorer.fixed_batch is None
    # the contract: a host restorer (no device tensors), in the file's precision, no forward ceiling
    assert ort_restorer.device is None and ort_restorer.precision is Precision.FP32
    assert ort_restorer.forward_limit() is None
    got = ort_restorer.restore(faces)
    torch_out = load_restorer(str(ckpt)).restore(faces)
    assert got.shape == faces.shape and got.dtype == np.uint8
    assert np.abs(got.astype(int) - torch_out.astype(int)).max() <= 1
    assert np.abs(got.astype(int) - reference_restore(sd, faces).astype(int)).max() <= 1


def test_fixed_batch_file_is_fed_in_chunks(tmp_path, exported):
    """FaceFusion's gpen_bfr_*.onnx have batch 1: a batch of 3 must still come back whole and right."""
    sd, _, result = exported
    model, _ = load_generator(sd)
    path = tmp_path / "gpen_bfr_64.onnx"
    with torch.no_grad():
        torch.onnx.export(
            model,
            (torch.zeros(1, 3, 64, 64),),
            str(path),
            input_names=["input"],
            output_names=["output"],
            opset_version=17,
            dynamo=False,
        )
    fixed = OnnxRestorer(path)
    assert fixed.fixed_batch == 1 and fixed.forward_limit() == 1  # the batch its network really runs
    faces = random_faces(3, 64, seed=5)
    got = fixed.restore(faces)
    want = OnnxRestorer(result.path).restore(faces)
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1


def test_not_a_gpen_onnx(tmp_path):
    path = tmp_path / "other.onnx"
    with torch.no_grad():
        torch.onnx.export(torch.nn.Linear(4, 2), (torch.zeros(1, 4),), str(path), input_names=["input"], dynamo=False)
    with pytest.raises(ModelError, match=r"\(N, 3, S, S\)"):
        OnnxRestorer(path)
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not an onnx file")
    with pytest.raises(ModelError, match="cannot load"):
        OnnxRestorer(broken)


def test_execution_providers_follow_device():
    cpu_only = ["CPUExecutionProvider"]
    gpu = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert providers_for("cpu", gpu) == ["CPUExecutionProvider"]
    assert providers_for("auto", cpu_only) == ["CPUExecutionProvider"]
    assert providers_for("auto", gpu)[0] == ("CUDAExecutionProvider", {})
    assert providers_for("cuda:1", gpu) == [("CUDAExecutionProvider", {"device_id": 1}), "CPUExecutionProvider"]
    assert [p[0] for p in providers_for("tensorrt", gpu)[:2]] == ["TensorrtExecutionProvider", "CUDAExecutionProvider"]
    with pytest.raises(DependencyError, match="onnxruntime-gpu"):
        providers_for("cuda", cpu_only)
    with pytest.raises(ConfigError):
        providers_for("tpu", gpu)
