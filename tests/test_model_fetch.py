"""Model download: resume with HTTP Range, hash check, atomic rename, one-line errors. Local server only.

The files served are small GPEN checkpoints in the official format (a plain ``torch.save(state_dict)``),
because a downloaded PyTorch checkpoint is accepted only when its tensors match the entry's network.
"""

from __future__ import annotations

import hashlib
import io
import json
import socket
import zlib
from pathlib import Path

import pytest
import torch
from model_helpers import PAYLOAD, Server, random_state_dict

from gpen_video.errors import FetchError
from gpen_video.models.fetch import check_present, download, fetch_model, served_name
from gpen_video.models.registry import REGISTRY, ModelEntry, get_entry, modelscope_file_lists, modelscope_urls

ARCH = {"size": 64, "channel_multiplier": 2, "narrow": 0.125, "n_mlp": 2, "style_dim": 32}


def _checkpoint_bytes(seed: int = 7, **arch) -> bytes:
    sd = random_state_dict(arch["size"], arch["channel_multiplier"], arch["narrow"], arch["n_mlp"], seed=seed,
                           style_dim=arch["style_dim"])  # fmt: skip
    buffer = io.BytesIO()
    torch.save(sd, buffer)
    return buffer.getvalue()


CKPT = _checkpoint_bytes(**ARCH)  # ~3.5 MB, not a multiple of the chunk size


@pytest.fixture
def server():
    s = Server()
    s.files["/models/GPEN-TEST.pth"] = CKPT
    yield s
    s.close()


@pytest.fixture
def entry(server, monkeypatch):
    e = ModelEntry(
        name="gpen-test",
        filename="GPEN-TEST.pth",
        urls=(server.url("/models/GPEN-TEST.pth"),),
        sha256=hashlib.sha256(CKPT).hexdigest(),
        file_bytes=len(CKPT),
        **ARCH,
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
    assert result.path.read_bytes() == CKPT
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
    (dest / "GPEN-TEST.pth.part").write_bytes(CKPT[:300_000])
    result = fetch_model("gpen-test", weights_dir=dest)
    assert result.path.read_bytes() == CKPT
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
    assert result.path.read_bytes() == CKPT
    assert server.requests[-1]["range"] == "bytes=123456-"


def test_server_without_range_support_restarts(tmp_path, server, entry):
    server.honour_range = False
    (tmp_path / "GPEN-TEST.pth.part").write_bytes(b"garbage that must not stay in the file")
    result = fetch_model("gpen-test", weights_dir=tmp_path)
    assert result.path.read_bytes() == CKPT


def test_complete_part_file_gets_416_and_is_kept(tmp_path, server, entry):
    (tmp_path / "GPEN-TEST.pth.part").write_bytes(CKPT)
    result = fetch_model("gpen-test", weights_dir=tmp_path)
    assert result.path.read_bytes() == CKPT


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
    assert not result.verified and result.sha256 == hashlib.sha256(CKPT).hexdigest()


def test_second_url_used_when_first_fails(tmp_path, server, monkeypatch, entry):
    mirrors = (server.url("/missing/GPEN-TEST.pth"), server.url("/models/GPEN-TEST.pth"))
    monkeypatch.setitem(REGISTRY.entries, "gpen-test", ModelEntry(**{**entry.__dict__, "urls": mirrors}))
    assert fetch_model("gpen-test", weights_dir=tmp_path).path.read_bytes() == CKPT


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
    assert result.path.read_bytes() == CKPT
    captured = capsys.readouterr()
    assert "GPEN-TEST.pth" in captured.err and "100%" in captured.err
    assert captured.out == ""


# ------------------------------------------------------------------------------ the registry's addresses


def test_registry_tries_modelscope_iic_then_damo_sdk_form_first():
    entry = get_entry("gpen-bfr-2048")
    site = "https://www.modelscope.cn"
    file = "pytorch_model-2048.pt"
    assert entry.urls[:4] == (
        f"{site}/api/v1/models/iic/cv_gpen_image-portrait-enhancement-hires/repo?Revision=master&FilePath={file}",
        f"{site}/models/iic/cv_gpen_image-portrait-enhancement-hires/resolve/master/{file}",
        f"{site}/api/v1/models/damo/cv_gpen_image-portrait-enhancement-hires/repo?Revision=master&FilePath={file}",
        f"{site}/models/damo/cv_gpen_image-portrait-enhancement-hires/resolve/master/{file}",
    )
    assert all(served_name(u) == file for u in entry.urls[:4])
    # fetch saves it under the official name; the name ModelScope serves is accepted when looking
    assert entry.filename == "GPEN-BFR-2048.pth" and entry.filenames == ("GPEN-BFR-2048.pth", file)
    assert entry.sha256_lists[0] == (
        f"{site}/api/v1/models/iic/cv_gpen_image-portrait-enhancement-hires/repo/files?Revision=master&Recursive=True",
        file,
    )
    assert (entry.tensors, entry.params, entry.template) == (201, 71_294_769, "gpen")
    assert get_entry("gpen-bfr-1024").filenames == ("GPEN-BFR-1024.pth", "pytorch_model.pt")


def test_registry_knows_facefusions_2048_export():
    entry = get_entry("gpen-bfr-2048-onnx")
    assert entry.file_bytes == 285_582_766 and entry.verified
    assert entry.sha256 == "66d12a637118d71b00f5a290b8dac13c81c1c0326a127a1978799c6e17bb8d1f"
    assert entry.template == "ffhq" and entry.crc32_urls[0].endswith("/gpen_bfr_2048.hash")
    assert get_entry("gpen-bfr-256-onnx").template == "arcface_128"


def test_fetched_file_found_under_the_name_the_mirror_serves(tmp_path, monkeypatch):
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "pytorch_model-2048.pt").write_bytes(b"placed by hand")
    result = fetch_model("gpen-bfr-2048", weights_dir=tmp_path / "w")  # no network: it is there already
    assert result.path == tmp_path / "w" / "pytorch_model-2048.pt" and not result.downloaded


# ----------------------------------------------------------------- ModelScope: file list, shapes, names


@pytest.fixture
def modelscope(server, monkeypatch):
    """A ModelScope look-alike: the iic id answers 404, the damo id serves the file and lists its SHA-256."""
    site = server.url("")
    ids = ("iic/gpen-test", "damo/gpen-test")
    listing = {"Code": 200, "Data": {"Files": [
        {"Name": "README.md", "Path": "README.md", "Sha256": "0" * 64, "Size": 10, "Type": "blob"},
        {"Name": "pytorch_model-64.pt", "Path": "pytorch_model-64.pt", "Sha256": hashlib.sha256(CKPT).hexdigest(),
         "Size": len(CKPT), "Type": "blob"},
    ]}}  # fmt: skip
    server.files["/api/v1/models/damo/gpen-test/repo/files?Revision=master&Recursive=True"] = json.dumps(
        listing
    ).encode()
    server.files["/api/v1/models/damo/gpen-test/repo?Revision=master&FilePath=pytorch_model-64.pt"] = CKPT
    e = ModelEntry(
        name="gpen-test",
        filename="GPEN-TEST.pth",
        alt_filenames=("pytorch_model-64.pt",),
        urls=modelscope_urls("pytorch_model-64.pt", ids, site),
        sha256_lists=modelscope_file_lists("pytorch_model-64.pt", ids, site),
        **ARCH,
    )
    monkeypatch.setitem(REGISTRY.entries, e.name, e)
    return e


def test_modelscope_hash_from_file_list_and_saved_under_entry_name(tmp_path, server, modelscope):
    result = fetch_model("gpen-test", weights_dir=tmp_path)
    assert result.path == tmp_path / "GPEN-TEST.pth" and result.path.read_bytes() == CKPT
    assert result.verified and result.sha256 == hashlib.sha256(CKPT).hexdigest()
    assert "sha256 matches ModelScope's file list" in result.checks and "tensors match gpen-test" in result.checks
    asked = [r["path"] for r in server.requests]
    assert asked[0] == "/api/v1/models/iic/gpen-test/repo/files?Revision=master&Recursive=True"  # 404: next list
    assert asked[1] == "/api/v1/models/damo/gpen-test/repo/files?Revision=master&Recursive=True"
    assert asked[2] == "/api/v1/models/iic/gpen-test/repo?Revision=master&FilePath=pytorch_model-64.pt"
    assert asked[-1] == "/api/v1/models/damo/gpen-test/repo?Revision=master&FilePath=pytorch_model-64.pt"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["GPEN-TEST.pth"]


def test_modelscope_listed_hash_mismatch_is_refused(tmp_path, server, modelscope):
    url = "/api/v1/models/damo/gpen-test/repo?Revision=master&FilePath=pytorch_model-64.pt"
    other = _checkpoint_bytes(seed=8, **ARCH)  # the right network and length, other weights
    assert len(other) == len(CKPT) and other != CKPT
    server.files[url] = other
    with pytest.raises(FetchError, match="failed its checksum") as info:
        fetch_model("gpen-test", weights_dir=tmp_path)
    assert "\n" not in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_listed_size_is_checked(tmp_path, server, modelscope):
    url = "/api/v1/models/damo/gpen-test/repo?Revision=master&FilePath=pytorch_model-64.pt"
    server.files[url] = CKPT + b"extra"
    with pytest.raises(FetchError, match=rf"got {len(CKPT) + 5} bytes, expected {len(CKPT)}"):
        fetch_model("gpen-test", weights_dir=tmp_path)
    assert not (tmp_path / "GPEN-TEST.pth").exists()


def test_wrong_network_is_refused_by_its_shapes(tmp_path, server, monkeypatch, entry):
    """No hash to check (the file list is unreachable): the tensors still have to be the entry's network."""
    other = _checkpoint_bytes(**ARCH | {"narrow": 0.25})
    server.files["/models/GPEN-TEST.pth"] = other
    e = ModelEntry(**{**entry.__dict__, "sha256": "", "file_bytes": None,
                      "sha256_lists": ((server.url("/no/list"), "GPEN-TEST.pth"),)})  # fmt: skip
    monkeypatch.setitem(REGISTRY.entries, "gpen-test", e)
    with pytest.raises(FetchError, match=r"was refused and deleted: .*narrow=0\.25.*misnamed or not gpen-test") as info:
        fetch_model("gpen-test", weights_dir=tmp_path)
    assert "\n" not in str(info.value)
    assert list(tmp_path.iterdir()) == []  # neither the file nor a .part is kept
    # the official 2048's counts are checked too: a 64-px network with the entry's numbers but other counts
    wrong_counts = ModelEntry(**{**e.__dict__, "tensors": 201})
    monkeypatch.setitem(REGISTRY.entries, "gpen-test", wrong_counts)
    server.files["/models/GPEN-TEST.pth"] = CKPT
    with pytest.raises(FetchError, match=r"94 state_dict entries, but the released gpen-test has 201"):
        fetch_model("gpen-test", weights_dir=tmp_path)


def test_not_a_checkpoint_is_refused(tmp_path, server, monkeypatch, entry):
    server.files["/models/GPEN-TEST.pth"] = PAYLOAD
    monkeypatch.setitem(
        REGISTRY.entries, "gpen-test", ModelEntry(**{**entry.__dict__, "sha256": "", "file_bytes": None})
    )
    with pytest.raises(
        FetchError,
        match=r"GPEN-TEST\.pth from 127\.0\.0\.1 was refused and deleted: cannot read .*not a PyTorch checkpoint",
    ):
        fetch_model("gpen-test", weights_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_offline_modelscope_is_one_line(tmp_path, monkeypatch, modelscope):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    site = f"http://127.0.0.1:{port}"
    ids = ("iic/gpen-test", "damo/gpen-test")
    e = ModelEntry(**{**modelscope.__dict__, "urls": modelscope_urls("pytorch_model-64.pt", ids, site),
                      "sha256_lists": modelscope_file_lists("pytorch_model-64.pt", ids, site)})  # fmt: skip
    monkeypatch.setitem(REGISTRY.entries, "gpen-test", e)
    with pytest.raises(FetchError) as info:
        fetch_model("gpen-test", weights_dir=tmp_path)
    message = str(info.value)
    assert message.startswith("cannot reach 127.0.0.1: ") and "\n" not in message
    assert f"download pytorch_model-64.pt by hand ({e.urls[0]}) and place it in {tmp_path}" in message


# --------------------------------------------------------------------------------- FaceFusion's .hash


@pytest.fixture(scope="module")
def onnx_bytes(tmp_path_factory):
    """A small GPEN exported to ONNX (input 'input', output 'output'), as FaceFusion's files are."""
    from gpen_video.models.onnx_export import export_onnx

    folder = tmp_path_factory.mktemp("onnx")
    (folder / "small.pth").write_bytes(CKPT)
    return export_onnx(folder / "small.pth", folder / "small.onnx").path.read_bytes()


@pytest.fixture
def onnx_entry(server, monkeypatch, onnx_bytes):
    server.files["/ff/gpen_test.onnx"] = onnx_bytes
    server.files["/ff/gpen_test.hash"] = format(zlib.crc32(onnx_bytes), "08x").encode()
    e = ModelEntry(
        name="gpen-test-onnx",
        filename="gpen_test.onnx",
        size=64,
        channel_multiplier=2,
        narrow=1,
        urls=(server.url("/ff/gpen_test.onnx"),),
        crc32_urls=(server.url("/ff/missing.hash"), server.url("/ff/gpen_test.hash")),
        fmt="onnx",
        template="ffhq",
    )
    monkeypatch.setitem(REGISTRY.entries, e.name, e)
    return e


def test_crc32_hash_file_is_checked(tmp_path, server, onnx_entry, onnx_bytes):
    result = fetch_model("gpen-test-onnx", weights_dir=tmp_path)
    assert result.path.read_bytes() == onnx_bytes and result.verified
    assert result.checks == ("crc32 matches FaceFusion's .hash", "a 64-px GPEN restorer in onnxruntime")
    server.files["/ff/gpen_test.hash"] = b"deadbeef\n"
    with pytest.raises(FetchError, match=r"failed its crc32 check \([0-9a-f]{8}, expected deadbeef\)"):
        fetch_model("gpen-test-onnx", weights_dir=tmp_path / "again")
    assert list((tmp_path / "again").iterdir()) == []


def test_onnx_of_unknown_hash_must_load_as_a_restorer_of_its_size(
    tmp_path, server, monkeypatch, onnx_entry, onnx_bytes
):
    no_hash = ModelEntry(**{**onnx_entry.__dict__, "crc32_urls": ()})
    monkeypatch.setitem(REGISTRY.entries, no_hash.name, no_hash)
    server.files["/ff/gpen_test.onnx"] = PAYLOAD
    with pytest.raises(FetchError, match=r"was refused and deleted: cannot load .*not a usable GPEN restorer"):
        fetch_model("gpen-test-onnx", weights_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []
    server.files["/ff/gpen_test.onnx"] = onnx_bytes
    monkeypatch.setitem(REGISTRY.entries, no_hash.name, ModelEntry(**{**no_hash.__dict__, "size": 128}))
    with pytest.raises(FetchError, match=r"takes 64×64 crops, but gpen-test-onnx is 128 px"):
        fetch_model("gpen-test-onnx", weights_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setitem(REGISTRY.entries, no_hash.name, no_hash)
    result = fetch_model("gpen-test-onnx", weights_dir=tmp_path)
    assert not result.verified and result.checks == ("a 64-px GPEN restorer in onnxruntime",)


def test_hash_file_beside_a_present_file_is_checked(tmp_path, onnx_entry):
    model = tmp_path / "gpen_test.onnx"
    model.write_bytes(PAYLOAD)
    (tmp_path / "gpen_test.hash").write_text(format(zlib.crc32(PAYLOAD), "08x"))
    result = check_present(onnx_entry, model)
    assert result.verified and result.checks == ("crc32 matches gpen_test.hash",)
    (tmp_path / "gpen_test.hash").write_text("00000000")
    with pytest.raises(FetchError, match=r"does not match gpen_test\.hash"):
        fetch_model("gpen-test-onnx", weights_dir=tmp_path)
