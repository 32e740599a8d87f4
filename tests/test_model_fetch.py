"""Model download: resume with HTTP Range, hash check, atomic rename, one-line errors. Local server only."""

from __future__ import annotations

import hashlib
import socket
from pathlib import Path

import pytest
from model_helpers import PAYLOAD, Server

from gpen_video.errors import FetchError
from gpen_video.models.fetch import download, fetch_model
from gpen_video.models.registry import REGISTRY, ModelEntry


@pytest.fixture
def server():
    s = Server()
    s.files["/models/GPEN-TEST.pth"] = PAYLOAD
    yield s
    s.close()


@pytest.fixture
def entry(server, monkeypatch):
    e = ModelEntry(
        name="gpen-test",
        filename="GPEN-TEST.pth",
        size=64,
        channel_multiplier=2,
        narrow=1,
        urls=(server.url("/models/GPEN-TEST.pth"),),
        sha256=hashlib.sha256(PAYLOAD).hexdigest(),
        file_bytes=len(PAYLOAD),
    )
    monkeypatch.setitem(REGISTRY.entries, e.name, e)
    return e


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("GPEN_VIDEO_WEIGHTS", raising=False)


def test_fetch_downloads_verifies_and_renames(tmp_path, server, entry):
    result = fetch_model("gpen-test", weights_dir=tmp_path / "w")
    assert result.path == tmp_path / "w" / "GPEN-TEST.pth"
    assert result.path.read_bytes() == PAYLOAD
    assert result.verified and result.downloaded and result.sha256 == entry.sha256
    assert not (tmp_path / "w" / "GPEN-TEST.pth.part").exists()
    # a second fetch finds the file and does not download again
    again = fetch_model("gpen-test", weights_dir=tmp_path / "w")
    assert not again.downloaded and len(server.requests) == 1


def test_default_destination_is_user_cache(tmp_path, server, entry):
    result = fetch_model("gpen-test")
    assert result.path == tmp_path / "cache" / "gpen-video" / "weights" / "GPEN-TEST.pth"


def test_resume_from_partial_download(tmp_path, server, entry):
    dest = tmp_path / "w"
    dest.mkdir()
    (dest / "GPEN-TEST.pth.part").write_bytes(PAYLOAD[:300_000])
    result = fetch_model("gpen-test", weights_dir=dest)
    assert result.path.read_bytes() == PAYLOAD
    assert server.requests[-1]["range"] == "bytes=300000-"


def test_broken_transfer_then_resume(tmp_path, server, entry):
    server.break_after = 123_456
    with pytest.raises(FetchError, match=r"broke off.*resume") as info:
        fetch_model("gpen-test", weights_dir=tmp_path)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "GPEN-TEST.pth").exists()  # never a half file under the final name
    assert (tmp_path / "GPEN-TEST.pth.part").stat().st_size == 123_456
    server.break_after = None
    result = fetch_model("gpen-test", weights_dir=tmp_path)
    assert result.path.read_bytes() == PAYLOAD
    assert server.requests[-1]["range"] == "bytes=123456-"


def test_server_without_range_support_restarts(tmp_path, server, entry):
    server.honour_range = False
    (tmp_path / "GPEN-TEST.pth.part").write_bytes(b"garbage that must not stay in the file")
    result = fetch_model("gpen-test", weights_dir=tmp_path)
    assert result.path.read_bytes() == PAYLOAD


def test_complete_part_file_gets_416_and_is_kept(tmp_path, server, entry):
    (tmp_path / "GPEN-TEST.pth.part").write_bytes(PAYLOAD)
    result = fetch_model("gpen-test", weights_dir=tmp_path)
    assert result.path.read_bytes() == PAYLOAD


def test_checksum_mismatch(tmp_path, server, monkeypatch, entry):
    bad = ModelEntry(**{**entry.__dict__, "sha256": "0" * 64})
    monkeypatch.setitem(REGISTRY.entries, "gpen-test", bad)
    with pytest.raises(FetchError, match="failed its checksum"):
        fetch_model("gpen-test", weights_dir=tmp_path)
    assert not (tmp_path / "GPEN-TEST.pth").exists()
    assert not (tmp_path / "GPEN-TEST.pth.part").exists()


def test_unknown_hash_downloads_unverified(tmp_path, server, monkeypatch, entry):
    monkeypatch.setitem(REGISTRY.entries, "gpen-test", ModelEntry(**{**entry.__dict__, "sha256": ""}))
    result = fetch_model("gpen-test", weights_dir=tmp_path)
    assert not result.verified and result.sha256 == hashlib.sha256(PAYLOAD).hexdigest()


def test_second_url_used_when_first_fails(tmp_path, server, monkeypatch, entry):
    mirrors = (server.url("/missing/GPEN-TEST.pth"), server.url("/models/GPEN-TEST.pth"))
    monkeypatch.setitem(REGISTRY.entries, "gpen-test", ModelEntry(**{**entry.__dict__, "urls": mirrors}))
    assert fetch_model("gpen-test", weights_dir=tmp_path).path.read_bytes() == PAYLOAD


def test_offline_gives_one_line_with_what_to_do(tmp_path, monkeypatch, entry):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/GPEN-TEST.pth"
    monkeypatch.setitem(REGISTRY.entries, "gpen-test", ModelEntry(**{**entry.__dict__, "urls": (url,)}))
    with pytest.raises(FetchError) as info:
        fetch_model("gpen-test", weights_dir=tmp_path)
    message = str(info.value)
    assert message.startswith("cannot reach 127.0.0.1: ")
    assert f"download GPEN-TEST.pth by hand ({url}) and place it in {tmp_path}" in message
    assert "\n" not in message


def test_http_error_is_reported(tmp_path, server):
    with pytest.raises(FetchError, match="HTTP 404"):
        download(server.url("/nope.pth"), Path(tmp_path) / "nope.pth")


def test_progress_bar_goes_to_stderr(tmp_path, server, entry, capsys):
    result = fetch_model("gpen-test", weights_dir=tmp_path, progress=True)
    assert result.path.read_bytes() == PAYLOAD
    captured = capsys.readouterr()
    assert "GPEN-TEST.pth" in captured.err and "100%" in captured.err
    assert captured.out == ""
