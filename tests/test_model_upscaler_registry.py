"""The RRDBNet background upscalers in the weights registry: fetch, list, verify, and ``upscaler_for``.

Files are served by the 127.0.0.1 server of ``model_helpers``: small random RRDBNets in the official key
layout, built by ``tests/reference/rrdbnet_reference.py`` (which shares no code with the package), saved as
the released files are (``{"params_ema": state_dict}``). A GPEN checkpoint, a wrong-scale RRDBNet, one with
an extra key and one holding a Python object are each served under an upscaler's name and must be refused.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import re

import pytest
import torch
from model_helpers import Server, random_state_dict

from gpen_video.config import ComposeConfig, Config, RestoreConfig
from gpen_video.errors import ConfigError, FetchError, ModelError
from gpen_video.models import weights_cli
from gpen_video.models.fetch import fetch_model
from gpen_video.models.registry import REGISTRY, locate
from gpen_video.models.rrdbnet import load_rrdbnet
from gpen_video.run.options import upscaler_for
from tests.reference.rrdbnet_reference import random_official_state_dict

UPSCALERS = {
    "realesrgan-x2": ("RealESRGAN_x2plus.pth", 2),
    "realesrgan-x4": ("RealESRGAN_x4plus.pth", 4),
    "realesrnet-x2": ("realesrnet_x2.pth", 2),
    "realesrnet-x4": ("realesrnet_x4.pth", 4),
}


def _rrdb_bytes(scale: int, seed: int = 0, extra: dict | None = None) -> bytes:
    state = random_official_state_dict(scale, 8, 1, 4, seed=seed)
    buffer = io.BytesIO()
    torch.save({"params_ema": state | (extra or {})}, buffer)
    return buffer.getvalue()


X2 = _rrdb_bytes(2, seed=1)
X4 = _rrdb_bytes(4, seed=2)


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("GPEN_VIDEO_WEIGHTS", raising=False)


@pytest.fixture
def server(monkeypatch):
    """The local server; realesrgan-x2 (the real entry, its URL pointed here) downloads from it."""
    s = Server()
    s.files["/up/RealESRGAN_x2plus.pth"] = X2
    local = dataclasses.replace(REGISTRY.entries["realesrgan-x2"], urls=(s.url("/up/RealESRGAN_x2plus.pth"),))
    monkeypatch.setitem(REGISTRY.entries, "realesrgan-x2", local)
    yield s
    s.close()


def cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="gpen-video")
    weights_cli.add_parser(parser.add_subparsers(dest="command"))
    return weights_cli.run(parser.parse_args(list(argv)))


def test_registry_holds_the_four_upscalers_with_their_official_locations():
    for name, (filename, scale) in UPSCALERS.items():
        entry = REGISTRY.get(name)
        assert entry is not None and entry.kind == "rrdbnet" and entry.is_upscaler
        assert entry.filename == filename and entry.scale == scale and not entry.verified
    assert REGISTRY.get("realesrgan-x2").urls == (
        "https://github.com/xinntao/Real-ESRGAN/releases/download/v0.2.1/RealESRGAN_x2plus.pth",
    )
    assert REGISTRY.get("realesrgan-x4").urls == (
        "https://github.com/xinntao/Real-ESRGAN/releases/download/v0.1.0/RealESRGAN_x4plus.pth",
    )
    assert REGISTRY.get("realesrgan-x2").licence.startswith("BSD-3-Clause")
    gpen_folder = REGISTRY.get("gpen-bfr-512").urls[0].rsplit("/", 1)[0]
    for name in ("realesrnet-x2", "realesrnet-x4"):
        entry = REGISTRY.get(name)
        assert (
            entry.urls == (f"{gpen_folder}/{entry.filename}",) and entry.licence == REGISTRY.get("gpen-bfr-512").licence
        )
    assert all(e.kind == "gpen" and not e.is_upscaler for e in REGISTRY if e.name.startswith("gpen-"))


def test_fetch_accepts_a_small_rrdbnet_of_the_entrys_scale(tmp_path, server):
    result = fetch_model("realesrgan-x2", weights_dir=tmp_path / "w")
    assert result.path == tmp_path / "w" / "RealESRGAN_x2plus.pth" and result.path.read_bytes() == X2
    assert result.downloaded and not result.verified  # no published hash
    assert result.checks == ("RRDBNet x2 (1 blocks, 8 features): official keys, scale matches realesrgan-x2",)
    assert load_rrdbnet(result.path).scale == 2
    assert locate("realesrgan-x2", tmp_path / "w") == result.path
    assert sorted(p.name for p in (tmp_path / "w").iterdir()) == ["RealESRGAN_x2plus.pth"]


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (None, r"not an RRDBNet \(Real-ESRGAN/RealESRNet\) checkpoint"),  # a GPEN checkpoint
        (X4, r"is an RRDBNet x4, but realesrgan-x2 is x2; the file is misnamed"),
        (_rrdb_bytes(2, extra={"extra.weight": torch.zeros(1)}), r"unexpected \['extra\.weight'\]"),
        (_rrdb_bytes(2, extra={"meta": argparse.Namespace(a=1)}), r"refusing to load .*could run code"),
    ],
    ids=["gpen-file", "wrong-scale", "extra-key", "python-object"],
)
def test_fetch_refuses_what_is_not_the_entrys_rrdbnet(tmp_path, server, payload, reason):
    if payload is None:
        buffer = io.BytesIO()
        torch.save(random_state_dict(64, 2, 0.125, 2, seed=3, style_dim=32), buffer)
        payload = buffer.getvalue()
    server.files["/up/RealESRGAN_x2plus.pth"] = payload
    with pytest.raises(FetchError) as info:
        fetch_model("realesrgan-x2", weights_dir=tmp_path)
    message = str(info.value)
    assert "\n" not in message and "RealESRGAN_x2plus.pth from 127.0.0.1 was refused and deleted: " in message
    assert re.search(reason, message), message
    assert list(tmp_path.iterdir()) == []  # neither the file nor its .part is kept


def test_list_shows_the_upscalers(tmp_path, capsys):
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "realesrnet_x4.pth").write_bytes(X4)
    assert cli("weights", "list") == 0
    lines = capsys.readouterr().out.splitlines()
    for name, (filename, scale) in UPSCALERS.items():
        line = next(row for row in lines if row.startswith(f"{name} "))
        assert re.match(rf"{name} +{re.escape(filename)} +x{scale} +- +- +~\d+ upscaler +unverified", line), line
    line_x4 = next(row for row in lines if row.startswith("realesrnet-x4 "))
    assert line_x4.rstrip().endswith(str(tmp_path / "weights" / "realesrnet_x4.pth"))
    assert next(row for row in lines if row.startswith("realesrgan-x2 ")).rstrip().endswith(" no")


def test_verify_an_rrdbnet_file(tmp_path, capsys):
    loose = tmp_path / "my_upscaler.pth"  # not a registry file name: checked as an RRDBNet by its tensors
    loose.write_bytes(X2)
    assert cli("weights", "verify", str(loose)) == 0
    out = capsys.readouterr().out
    assert "RRDBNet x2 (1 blocks, 8 features)" in out and "official keys: OK" in out
    (tmp_path / "weights").mkdir()
    named = tmp_path / "weights" / "RealESRGAN_x4plus.pth"
    named.write_bytes(X4)
    assert cli("weights", "verify", "realesrgan-x4") == 0  # by registry name
    out = capsys.readouterr().out
    assert "realesrgan-x4: unverified (no published hash)" in out and "scale matches realesrgan-x4" in out
    named.write_bytes(X2)  # an x2 network under the x4 name
    with pytest.raises(FetchError, match="is an RRDBNet x2, but realesrgan-x4 is x4; the file is misnamed"):
        cli("weights", "verify", str(named))
    gpen = tmp_path / "realesrnet_x2.pth"  # a GPEN checkpoint under an upscaler's name
    torch.save(random_state_dict(64, 2, 0.125, 2, seed=4, style_dim=32), gpen)
    with pytest.raises(ModelError, match="is not an RRDBNet"):
        cli("weights", "verify", str(gpen))


def test_upscaler_for_finds_the_file_through_the_registry_or_says_how_to_fetch_it(tmp_path):
    config = Config(compose=ComposeConfig(upscale=2, upscaler="realesrgan-x2"),
                    restore=RestoreConfig(weights_dir=str(tmp_path / "w")))  # fmt: skip
    with pytest.raises(ConfigError) as info:
        upscaler_for(config)
    message = str(info.value)
    assert "\n" not in message and "RealESRGAN_x2plus.pth is not in " in message
    assert "run: gpen-video weights fetch realesrgan-x2 (or put the file in one of those folders)" in message
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "RealESRGAN_x2plus.pth").write_bytes(X2)
    assert upscaler_for(config) is not None


def test_an_upscaler_named_as_the_model_is_refused_in_one_line():
    from gpen_video.config import RestoreConfig
    from gpen_video.errors import ConfigError
    from gpen_video.models.loader import load_restorer

    with pytest.raises(ConfigError, match=r"background upscaler: use --upscale 2 --upscaler realesrgan-x2"):
        load_restorer(RestoreConfig(model="realesrgan-x2"))
