"""Checkpoint reading: formats, wrappers, config inference, safety, clear errors; load_restorer specs."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from model_helpers import random_faces, random_state_dict, save_checkpoint

from gpen_video.errors import ConfigError, DependencyError, ModelError, WeightsNotFoundError
from gpen_video.models import infer_config, load_generator, load_restorer, read_state_dict
from gpen_video.models.registry import locate, search_dirs, user_cache_dir
from gpen_video.models.torch_backend import resolve_device, resolve_precision
from gpen_video.restore.restorer import IdentityRestorer


@pytest.fixture(scope="module")
def small_sd() -> dict[str, torch.Tensor]:
    return random_state_dict(64, 2, 0.125, 2, seed=21, style_dim=64)


@pytest.fixture(scope="module")
def faces() -> np.ndarray:
    return random_faces(2, 64, seed=3)


@pytest.fixture(scope="module")
def expected(small_sd, faces) -> np.ndarray:
    return load_restorer_from_sd(small_sd).restore(faces)


def load_restorer_from_sd(sd):
    from gpen_video.models.torch_backend import TorchRestorer

    return TorchRestorer(load_generator(sd)[0])


@pytest.mark.parametrize(
    ("size", "cm", "narrow", "n_mlp", "style_dim"),
    [(64, 2, 1.0, 8, 512), (64, 1, 0.5, 3, 64), (128, 2, 0.25, 2, 32), (256, 1, 0.5, 1, 16), (128, 4, 0.125, 2, 16)],
)
def test_infer_config_from_shapes(size, cm, narrow, n_mlp, style_dim):
    from gpen_video.models import FullGenerator

    with torch.device("meta"):
        sd = FullGenerator(size, style_dim, n_mlp, channel_multiplier=cm, narrow=narrow).state_dict()
    config = infer_config(sd)
    assert (config.size, config.channel_multiplier, config.narrow, config.n_mlp, config.style_dim) == (
        size,
        cm,
        narrow,
        n_mlp,
        style_dim,
    )


def test_infer_released_2048_config():
    from gpen_video.models import FullGenerator

    with torch.device("meta"):
        sd = FullGenerator(2048, 512, 8, channel_multiplier=2, narrow=1).state_dict()
    config = infer_config(sd)
    assert config.describe() == "GPEN 2048 (channel_multiplier=2, narrow=1)"
    assert config.n_mlp == 8 and config.style_dim == 512


@pytest.mark.parametrize(
    ("wrap", "prefix"), [(None, ""), ("g_ema", ""), ("params_ema", ""), ("state_dict", "module."), (None, "module.")]
)
def test_plain_and_wrapped_checkpoints_load(tmp_path, small_sd, faces, expected, wrap, prefix):
    path = save_checkpoint(small_sd, tmp_path / "model.pth", wrap=wrap, prefix=prefix)
    restorer = load_restorer(str(path))
    assert np.array_equal(restorer.restore(faces), expected)


def test_modelscope_name_and_pt_suffix(tmp_path, small_sd, faces, expected):
    path = save_checkpoint(small_sd, tmp_path / "pytorch_model-2048.pt")
    assert np.array_equal(load_restorer(str(path)).restore(faces), expected)


def test_fp16_checkpoint_loads(tmp_path, small_sd, faces, expected):
    path = tmp_path / "half.pth"
    torch.save({k: v.half() for k, v in small_sd.items()}, path)
    got = load_restorer(str(path)).restore(faces)
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= 8  # fp16-rounded weights, fp32 compute


def test_safetensors(tmp_path, small_sd, faces, expected):
    from safetensors.torch import save_file

    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in small_sd.items()}, str(path))
    assert np.array_equal(load_restorer(str(path)).restore(faces), expected)


def test_missing_blur_kernels_are_filled_in(tmp_path, small_sd, faces, expected):
    path = tmp_path / "nokernels.pth"
    torch.save({k: v for k, v in small_sd.items() if not k.endswith(".kernel")}, path)
    assert np.array_equal(load_restorer(str(path)).restore(faces), expected)


class _Evil:
    def __reduce__(self):
        return (os.system, (f"touch {_Evil.marker}",))


@pytest.mark.parametrize("legacy", [False, True])
def test_malicious_pickle_is_refused_and_never_runs(tmp_path, small_sd, legacy):
    marker = tmp_path / "pwned"
    _Evil.marker = marker
    path = tmp_path / "evil.pth"
    payload = dict(small_sd)
    payload["__evil__"] = _Evil()
    torch.save(payload, path, _use_new_zipfile_serialization=not legacy)
    with pytest.raises(ModelError, match="refusing to load"):
        load_restorer(str(path))
    assert not marker.exists()
    # the payload is real: an unsafe load (never done by gpen-video) runs it
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_truncated_file(tmp_path, small_sd):
    path = save_checkpoint(small_sd, tmp_path / "GPEN-BFR-64.pth")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match="truncated"):
        load_restorer(str(path))


def test_not_a_gpen_checkpoint_names_missing_keys(tmp_path):
    path = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(8, 3, 3, 3), "fc.bias": torch.zeros(10)}, path)
    with pytest.raises(ModelError, match=r"not a GPEN FullGenerator checkpoint: missing generator\.input\.input"):
        load_restorer(str(path))


def test_missing_and_mismatched_keys_are_named(tmp_path, small_sd):
    broken = dict(small_sd)
    del broken["generator.convs.1.conv.weight"]
    path = tmp_path / "broken.pth"
    torch.save(broken, path)
    with pytest.raises(ModelError, match=r"1 missing \(generator\.convs\.1\.conv\.weight\)"):
        load_restorer(str(path))
    wrong = dict(small_sd)
    wrong["generator.to_rgbs.0.bias"] = torch.zeros(1, 4, 1, 1)
    torch.save(wrong, path)
    with pytest.raises(ModelError, match=r"generator\.to_rgbs\.0\.bias \(1, 4, 1, 1\) \(expected \(1, 3, 1, 1\)\)"):
        load_restorer(str(path))


def test_sr_generator_is_rejected():
    sd = {k: v for k, v in random_state_dict(128, 2, 0.125, 1, style_dim=16).items() if not k.startswith("ecd4.")}
    sd["ecd0.0.0.weight"] = torch.zeros(16, 3, 1, 1)
    with pytest.raises(ModelError, match="FullGenerator_SR"):
        infer_config(sd)


def test_non_tensor_container(tmp_path):
    path = tmp_path / "empty.pth"
    torch.save({"epoch": 3}, path)
    with pytest.raises(ModelError, match="not a GPEN generator"):
        read_state_dict(path)


def test_nan_weights_are_a_damaged_file(small_sd):
    bad = dict(small_sd)
    bad["final_linear.0.bias"] = torch.full_like(bad["final_linear.0.bias"], float("nan"))
    with pytest.raises(ModelError, match="NaN"):
        load_generator(bad)


# ------------------------------------------------------------------------------------- specs, lookup


def test_identity_spec():
    restorer = load_restorer("identity", identity_size=128)
    assert isinstance(restorer, IdentityRestorer) and restorer.size == 128


def test_unknown_spec():
    with pytest.raises(ConfigError, match="unknown model 'gpen-bfr-9000'"):
        load_restorer("gpen-bfr-9000")
    with pytest.raises(ModelError, match="not found"):
        load_restorer("/nonexistent/model.pth")


def test_missing_registry_model_says_where_and_how(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("GPEN_VIDEO_WEIGHTS", str(tmp_path / "env"))
    with pytest.raises(WeightsNotFoundError) as info:
        load_restorer("gpen-bfr-2048", weights_dir=str(tmp_path / "mine"))
    message = str(info.value)
    assert "\n" not in message
    assert "GPEN-BFR-2048.pth" in message and "pytorch_model-2048.pt" in message
    for where in ("mine", "env", "weights", "cache/gpen-video/weights"):
        assert str(tmp_path / where) in message
    assert "gpen-video weights fetch gpen-bfr-2048" in message


def test_search_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("GPEN_VIDEO_WEIGHTS", str(tmp_path / "env"))
    assert user_cache_dir() == tmp_path / "cache" / "gpen-video" / "weights"
    assert search_dirs(tmp_path / "cli") == [
        tmp_path / "cli",
        tmp_path / "env",
        tmp_path / "weights",
        tmp_path / "cache" / "gpen-video" / "weights",
    ]
    for folder in ("cache/gpen-video/weights", "weights", "env", "cli"):
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / "GPEN-BFR-512.pth").write_bytes(b"x")
        assert locate("gpen-bfr-512", tmp_path / "cli") == tmp_path / folder / "GPEN-BFR-512.pth"
    # ModelScope's file name is accepted for the 2048 model
    (tmp_path / "env" / "pytorch_model-2048.pt").write_bytes(b"x")
    assert locate("gpen-bfr-2048") == tmp_path / "env" / "pytorch_model-2048.pt"


def test_registry_name_loads_from_weights_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("GPEN_VIDEO_WEIGHTS", raising=False)
    sd = random_state_dict(256, 1, 0.5, 8, seed=5)  # the GPEN-BFR-256 architecture, random weights
    save_checkpoint(sd, tmp_path / "GPEN-BFR-256.pth")
    restorer = load_restorer("gpen-bfr-256", weights_dir=str(tmp_path))
    assert restorer.size == 256 and restorer.name.startswith("gpen-bfr-256 torch cpu fp32")
    # a file of the wrong network under a registry name is reported, not silently used
    save_checkpoint(random_state_dict(64, 2, 0.125, 1, style_dim=16), tmp_path / "GPEN-BFR-512.pth")
    with pytest.raises(ModelError, match="misnamed"):
        load_restorer("gpen-bfr-512", weights_dir=str(tmp_path))


def test_device_and_precision_resolution():
    auto = resolve_device("auto")
    assert auto.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_precision("fp16", torch.device("cpu")) == torch.float16
    cpu_auto = resolve_precision("auto", torch.device("cpu"))
    assert cpu_auto == torch.float32
    with pytest.raises(ConfigError):
        resolve_precision("int8", torch.device("cpu"))
    with pytest.raises(ConfigError):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(DependencyError, match="--device cpu"):
            resolve_device("cuda")


def test_path_object_accepted(tmp_path, small_sd):
    path = save_checkpoint(small_sd, Path(tmp_path) / "m.pth")
    assert load_restorer(path).size == 64


# ------------------------------------------------------------------ the shape check a download must pass


@pytest.mark.parametrize("name", ["gpen-bfr-2048", "gpen-bfr-1024", "gpen-bfr-512", "gpen-bfr-256"])
def test_registry_counts_match_the_official_network(name):
    """The registry's known counts (spec: official FullGenerator instantiated) agree with a shape-only build."""
    from gpen_video.models.checkpoint import GpenConfig, check_architecture
    from gpen_video.models.registry import get_entry

    entry = get_entry(name)
    with torch.device("meta"):
        skeleton = GpenConfig(entry.size, entry.channel_multiplier, entry.narrow).build("meta")
    facts = check_architecture(skeleton.state_dict(), entry.architecture, name)
    assert (facts.tensors, facts.params) == (entry.tensors, entry.params)
    if name == "gpen-bfr-2048":
        assert (facts.tensors, facts.params) == (201, 71_294_769)


def test_check_architecture_names_what_differs(tmp_path):
    from gpen_video.models.checkpoint import check_architecture
    from gpen_video.models.registry import Architecture

    sd = random_state_dict(64, 2, 0.125, 2, seed=3, style_dim=32)
    path = save_checkpoint(sd, tmp_path / "small.pth")
    facts = check_architecture(path, Architecture(64, 2, 0.125, 2, 32), "small")
    assert facts.tensors == len(sd) and facts.params == sum(v.numel() for k, v in sd.items() if "kernel" not in k)
    with pytest.raises(ModelError, match=r"holds GPEN 64 .*but big is GPEN 128 .*misnamed or not big"):
        check_architecture(path, Architecture(128, 2, 0.125, 2, 32), "big")
    with pytest.raises(ModelError, match=r"n_mlp=2, .* but other is .*n_mlp=8"):
        check_architecture(path, Architecture(64, 2, 0.125, 8, 32), "other")
    with pytest.raises(ModelError, match="but the released small has 12,345"):
        check_architecture(path, Architecture(64, 2, 0.125, 2, 32, params=12_345), "small")
    broken = dict(sd)
    broken["generator.to_rgb1.bias"] = torch.zeros(1, 4, 1, 1)
    with pytest.raises(ModelError, match="of the wrong shape"):
        check_architecture(broken, Architecture(64, 2, 0.125, 2, 32), "small")
