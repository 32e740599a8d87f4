"""ONNX export and the onnxruntime backend: same I/O as the official/FaceFusion files, same output as PyTorch."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from model_helpers import random_faces, random_state_dict, reference_restore, save_checkpoint

from gpen_video.config import RestoreConfig
from gpen_video.errors import ConfigError, DependencyError, ModelError
from gpen_video.models import load_generator, load_restorer
from gpen_video.models.loader import load_restorer as restorer_for
from gpen_video.models.onnx_backend import CPU_EP, CUDA_EP, TRT_EP, OnnxRestorer, TensorrtPlan, providers_for
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
    cpu_only = [CPU_EP]
    gpu = [TRT_EP, CUDA_EP, CPU_EP]
    assert providers_for("cpu", gpu) == [CPU_EP]
    assert providers_for("auto", cpu_only) == [CPU_EP]
    assert providers_for("auto", gpu)[0][0] == CUDA_EP
    assert "device_id" not in providers_for("auto", gpu)[0][1]  # the current GPU (a Ray worker's only one)
    cuda = providers_for("cuda:1", gpu)
    assert cuda[0] == (CUDA_EP, {"device_id": "1", "cudnn_conv_algo_search": "EXHAUSTIVE",
                                 "arena_extend_strategy": "kSameAsRequested"})  # fmt: skip
    assert cuda[1:] == [CPU_EP]
    trt = providers_for("tensorrt:2", gpu, {"trt_fp16_enable": "True"})
    assert [p if isinstance(p, str) else p[0] for p in trt] == [TRT_EP, CUDA_EP, CPU_EP]
    assert trt[0][1] == {"device_id": "2", "trt_fp16_enable": "True"} and trt[1][1]["device_id"] == "2"
    with pytest.raises(DependencyError, match="onnxruntime-gpu"):
        providers_for("cuda", cpu_only)
    with pytest.raises(ConfigError):
        providers_for("tpu", gpu)


class _GpuSessions:
    """Stands in for onnxruntime.InferenceSession on a machine with no GPU: the real session runs on the CPU,
    but it reports ``loaded`` as its providers (what ONNX Runtime says after it loaded, or failed to load, a GPU
    provider), and every providers list asked for is kept."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, available: list[str], loaded: list[str]) -> None:
        self.asked: list[list] = []
        real = onnxruntime.InferenceSession
        outer = self

        class Session:
            def __init__(self, path, sess_options=None, providers=None):
                outer.asked.append(list(providers or []))
                self._real = real(path, sess_options=sess_options, providers=[CPU_EP])
                self._loaded = [CPU_EP] if providers == [CPU_EP] else list(loaded)

            def get_providers(self):
                return self._loaded

            def __getattr__(self, name):
                return getattr(self._real, name)

        monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: list(available))
        monkeypatch.setattr(onnxruntime, "InferenceSession", Session)

    def tensorrt_options(self) -> dict[str, str]:
        (options,) = [p[1] for asked in self.asked for p in asked if isinstance(p, tuple) and p[0] == TRT_EP]
        return options


@pytest.mark.parametrize(
    ("device", "available", "loaded", "named"),
    [
        ("cuda", [CUDA_EP, CPU_EP], [CPU_EP], r"could not load CUDA .* on CPU instead; --device cuda needs it"),
        ("tensorrt", [TRT_EP, CUDA_EP, CPU_EP], [CUDA_EP, CPU_EP], r"could not load TensorRT .* on CUDA, CPU instead"),
        ("tensorrt", [TRT_EP, CUDA_EP, CPU_EP], [CPU_EP], r"could not load TensorRT, CUDA .* on CPU instead"),
    ],
)
def test_a_gpu_provider_that_did_not_load_is_an_error(
    monkeypatch, tmp_path, exported, device, available, loaded, named
):
    """ONNX Runtime falls back to what did load without failing: asking for CUDA or TensorRT and getting anything
    else is refused in one line naming the providers that did load."""
    _, _, result = exported
    sessions = _GpuSessions(monkeypatch, available, loaded)
    with pytest.raises(DependencyError, match=named) as caught:
        OnnxRestorer(result.path, device=device, tensorrt_plan=TensorrtPlan(tmp_path / "trt"))
    assert "\n" not in str(caught.value)
    assert sessions.asked[-1][0][0] == (TRT_EP if device == "tensorrt" else CUDA_EP)  # it was asked for


def test_tensorrt_gets_caches_under_the_weights_folder_and_a_batch_profile(monkeypatch, tmp_path, exported):
    """The TensorRT session is built with its engine and timing caches under the weights folder, a profile over
    the batch axis of the model's real input (name and size), tuned for the restore batch, and fp16 when asked."""
    _, _, result = exported
    sessions = _GpuSessions(monkeypatch, [TRT_EP, CUDA_EP, CPU_EP], [TRT_EP, CUDA_EP, CPU_EP])
    weights = tmp_path / "weights"
    config = RestoreConfig(model=str(result.path), device="tensorrt", precision="fp16", batch_size=6,
                           weights_dir=str(weights))  # fmt: skip
    restorer = restorer_for(config)  # the pipeline's loader: the weights folder and batch come from the config
    options = sessions.tensorrt_options()
    assert options["trt_engine_cache_enable"] == "True" and options["trt_timing_cache_enable"] == "True"
    assert options["trt_engine_cache_path"] == str(weights / "tensorrt" / "engines")
    assert options["trt_timing_cache_path"] == str(weights / "tensorrt" / "timing")
    assert (weights / "tensorrt" / "engines").is_dir() and (weights / "tensorrt" / "timing").is_dir()
    assert options["trt_profile_min_shapes"] == "input:1x3x64x64"
    assert options["trt_profile_opt_shapes"] == "input:6x3x64x64"
    assert options["trt_profile_max_shapes"] == "input:16x3x64x64"
    assert options["trt_fp16_enable"] == "True" and restorer.precision is Precision.FP16
    assert restorer.name.endswith("onnx tensorrt")
    # a file with a fixed batch (FaceFusion's) has nothing to profile; the input name is the file's own
    fixed = TensorrtPlan(tmp_path / "c", batch=32).options("x", 2048, dynamic_batch=False)
    assert not any(k.startswith("trt_profile") for k in fixed) and fixed["trt_fp16_enable"] == "False"
    assert TensorrtPlan(tmp_path, batch=32).options("x", 512, True)["trt_profile_max_shapes"] == "x:32x3x512x512"
