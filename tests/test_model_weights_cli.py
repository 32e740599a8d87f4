"""`gpen-video weights list | fetch | verify | export-onnx`, driven through add_parser/run as the CLI does."""

from __future__ import annotations

import argparse
import hashlib
import zlib

import pytest
from model_helpers import Server, random_state_dict, save_checkpoint

from gpen_video.errors import FetchError, ModelError, WeightsNotFoundError
from gpen_video.models import weights_cli
from gpen_video.models.registry import REGISTRY, ModelEntry


def cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="gpen-video")
    weights_cli.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(list(argv))
    assert args.command == "weights"
    return weights_cli.run(args)


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("GPEN_VIDEO_WEIGHTS", raising=False)


@pytest.fixture(scope="module")
def small_ckpt(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ckpt")
    return save_checkpoint(random_state_dict(64, 2, 0.125, 2, seed=51, style_dim=32), folder / "small.pth")


def test_list(capsys, tmp_path):
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "GPEN-BFR-512.pth").write_bytes(b"x")
    assert cli("weights", "list") == 0
    out = capsys.readouterr().out
    for name in ("gpen-bfr-2048", "gpen-bfr-1024", "gpen-bfr-512", "gpen-bfr-256"):
        assert name in out
    assert "GPEN-BFR-2048.pth" in out and "pytorch_model.pt" in out
    # entries with no hash anywhere (published, in ModelScope's file list, or in a FaceFusion .hash) say so
    unhashed = [e for e in REGISTRY if not (e.sha256 or e.sha256_lists or e.crc32_urls)]
    assert out.count("unverified (no published hash)") == len(unhashed) == 6  # 2 GPEN + the 4 upscalers
    assert sum(1 for e in unhashed if not e.is_upscaler) == 2
    assert "gpen-bfr-2048 is also found as: pytorch_model-2048.pt" in out
    line_onnx = next(line for line in out.splitlines() if line.startswith("gpen-bfr-2048-onnx "))
    assert " 286 ffhq " in line_onnx and "sha256 66d12a637118d71b" in line_onnx
    line_512 = next(line for line in out.splitlines() if line.startswith("gpen-bfr-512 "))
    assert str(tmp_path / "weights" / "GPEN-BFR-512.pth") in line_512
    line_256 = next(line for line in out.splitlines() if line.startswith("gpen-bfr-256 "))
    assert line_256.rstrip().endswith("no") and " 0.5 " in line_256
    assert f"searched, in order: {tmp_path / 'weights'}" in out


def test_verify_checkpoint(capsys, small_ckpt):
    assert cli("weights", "verify", str(small_ckpt)) == 0
    out = capsys.readouterr().out
    assert hashlib.sha256(small_ckpt.read_bytes()).hexdigest() in out
    assert "GPEN 64 (channel_multiplier=2, narrow=0.125), n_mlp=2, style_dim=32" in out and "OK" in out


def test_verify_registry_name_and_misnamed_file(tmp_path, small_ckpt, capsys):
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "GPEN-BFR-512.pth").write_bytes(small_ckpt.read_bytes())
    with pytest.raises(ModelError, match="misnamed"):
        cli("weights", "verify", "gpen-bfr-512")
    assert "unverified (no published hash)" in capsys.readouterr().out
    with pytest.raises(WeightsNotFoundError, match="weights fetch gpen-bfr-256"):
        cli("weights", "verify", "gpen-bfr-256")


def test_verify_rejects_garbage(tmp_path):
    bad = tmp_path / "GPEN-BFR-2048.pth"
    bad.write_bytes(b"\x00" * 1000)
    with pytest.raises(ModelError, match="truncated or not a PyTorch checkpoint"):
        cli("weights", "verify", str(bad))


def test_export_onnx_and_verify(tmp_path, small_ckpt, capsys):
    out_path = tmp_path / "small.onnx"
    assert cli("weights", "export-onnx", str(small_ckpt), str(out_path), "--opset", "17", "--size-check") == 0
    out = capsys.readouterr().out
    assert out_path.is_file() and "input 'input', output 'output'" in out
    assert "onnxruntime vs PyTorch: max abs difference" in out
    assert cli("weights", "verify", str(out_path)) == 0
    assert "ONNX GPEN restorer: 64×64, batch dynamic" in capsys.readouterr().out


def test_fetch_through_cli(tmp_path, monkeypatch, capsys, small_ckpt):
    server = Server()
    try:
        payload = small_ckpt.read_bytes()  # a checkpoint in the official format: its tensors are checked
        server.files["/GPEN-TEST.pth"] = payload
        entry = ModelEntry(
            name="gpen-test",
            filename="GPEN-TEST.pth",
            size=64,
            channel_multiplier=2,
            narrow=0.125,
            n_mlp=2,
            style_dim=32,
            urls=(server.url("/GPEN-TEST.pth"),),
        )
        monkeypatch.setitem(REGISTRY.entries, "gpen-test", entry)
        assert cli("weights", "fetch", "gpen-test", "--weights-dir", str(tmp_path / "w")) == 0
        out = capsys.readouterr().out
        assert f"downloaded to {tmp_path / 'w' / 'GPEN-TEST.pth'}" in out
        assert "unverified (no published hash)" in out and "tensors match gpen-test" in out
        assert (tmp_path / "w" / "GPEN-TEST.pth").read_bytes() == payload
        server.close()
        # offline now, but the file is there: no download needed
        assert cli("weights", "fetch", "gpen-test", "--weights-dir", str(tmp_path / "w")) == 0
        assert "already present" in capsys.readouterr().out
        with pytest.raises(FetchError, match=r"cannot reach 127\.0\.0\.1"):
            cli("weights", "fetch", "gpen-test", "--weights-dir", str(tmp_path / "other"))
    finally:
        server.close()


def test_weights_dir_of_main_parser_is_kept(tmp_path):
    parser = argparse.ArgumentParser()
    parser.add_argument("--weights-dir")
    weights_cli.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["--weights-dir", str(tmp_path), "weights", "list"])
    assert args.weights_dir == str(tmp_path)


def test_verify_checks_the_entrys_network_and_a_hash_file(tmp_path, small_ckpt, monkeypatch, capsys):
    entry = ModelEntry(name="gpen-test", filename="GPEN-TEST.pth", size=64, channel_multiplier=2, narrow=0.125,
                       n_mlp=2, style_dim=32, urls=())  # fmt: skip
    monkeypatch.setitem(REGISTRY.entries, "gpen-test", entry)
    path = tmp_path / "GPEN-TEST.pth"
    path.write_bytes(small_ckpt.read_bytes())
    assert cli("weights", "verify", str(path)) == 0
    assert "tensors match gpen-test" in capsys.readouterr().out
    monkeypatch.setitem(REGISTRY.entries, "gpen-test", ModelEntry(**{**entry.__dict__, "narrow": 0.25}))
    with pytest.raises(ModelError, match="misnamed or not gpen-test"):
        cli("weights", "verify", str(path))
    monkeypatch.setitem(REGISTRY.entries, "gpen-test", entry)
    (tmp_path / "GPEN-TEST.hash").write_text(format(zlib.crc32(path.read_bytes()), "08x"))
    assert cli("weights", "verify", str(path)) == 0
    assert "gpen-test: crc32 matches GPEN-TEST.hash" in capsys.readouterr().out
    (tmp_path / "GPEN-TEST.hash").write_text("0badf00d")
    with pytest.raises(FetchError, match=r"does not match GPEN-TEST\.hash"):
        cli("weights", "verify", str(path))
