"""Download model files: resumable, checked, and moved into place atomically.

The download goes to ``<file>.part`` in the destination folder; an interrupted run resumes it with an
HTTP ``Range`` request. The file is saved under the entry's ``filename`` whatever a mirror calls it, and
only a complete file that passed every check is renamed to that name, so a file under it is always whole:

- its size, when known (published, or from ModelScope's file list);
- its SHA-256: the published one, else the one ModelScope's file list gives at fetch time;
- its CRC32, where a FaceFusion-style ``.hash`` file is published beside it;
- for PyTorch checkpoints, the tensors' shapes against the network the entry names (``check_architecture``);
  for an ONNX file of unknown SHA-256, that onnxruntime loads it as a GPEN restorer of the entry's size;
- for an RRDBNet upscaler (``kind="rrdbnet"``, no hash published), that it loads with ``weights_only`` as an
  RRDBNet with every official key and nothing else, of the entry's scale (``check_upscaler``).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gpen_video.errors import FetchError, GpenVideoError
from gpen_video.models.registry import ModelEntry, default_download_dir, find_file, get_entry

log = logging.getLogger(__name__)

CHUNK = 1 << 20
USER_AGENT = "gpen-video (+https://github.com/)"
SMALL_LIMIT = 4 << 20  # most bytes read from a file list or a .hash file
UNVERIFIED = "unverified (no published hash)"


@dataclass(frozen=True)
class FetchResult:
    path: Path
    sha256: str
    verified: bool  # False: no hash (published or listed) to check against
    downloaded: bool  # False: the file was already there
    checks: tuple[str, ...] = ()  # what the file was checked against, in words

    def describe(self) -> str:
        return "; ".join(self.checks) if self.checks else UNVERIFIED


@dataclass(frozen=True)
class ExpectedFile:
    """What a download must match: learned from the registry and, at fetch time, from the mirrors."""

    sha256: str | None = None
    sha256_source: str = ""  # "the registry", "ModelScope's file list"
    file_bytes: int | None = None
    crc32: str | None = None  # 8 lowercase hex digits


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def crc32_file(path: str | Path) -> str:
    """CRC32 of the whole file as 8 hex digits, as FaceFusion's ``.hash`` files hold it."""
    value = 0
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            value = zlib.crc32(block, value)
    return format(value & 0xFFFFFFFF, "08x")


def fetch_model(
    name: str, weights_dir: str | Path | None = None, progress: bool = False, timeout: float = 30.0
) -> FetchResult:
    """Make a registry model's file present locally (download if needed) and return where it is."""
    entry = get_entry(name)
    existing = find_file(entry.filenames, weights_dir)
    if existing is not None:
        return check_present(entry, existing)
    dest_dir = default_download_dir(weights_dir)
    return download_entry(entry, dest_dir, progress=progress, timeout=timeout)


def check_present(entry: ModelEntry, path: Path) -> FetchResult:
    """Check a file already on disk: the published SHA-256, and a ``.hash`` file beside it if there is one."""
    digest = sha256_file(path)
    _check_hash(entry, path, digest)
    checks = ["sha256 matches the registry"] if entry.sha256 else []
    sidecar = path.with_suffix(".hash")
    if sidecar.is_file():
        want = _parse_crc32(sidecar.read_bytes(), str(sidecar))
        got = crc32_file(path)
        if got != want:
            raise FetchError(
                f"{path} does not match {sidecar.name} (crc32 {got}, expected {want}); delete both and run: "
                f"gpen-video weights fetch {entry.name}"
            )
        checks.append(f"crc32 matches {sidecar.name}")
    return FetchResult(path, digest, bool(checks), downloaded=False, checks=tuple(checks))


def download_entry(entry: ModelEntry, dest_dir: Path, progress: bool = False, timeout: float = 30.0) -> FetchResult:
    """Try each of the entry's URLs in turn; the first that completes and passes every check wins."""
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FetchError(f"cannot create {dest_dir}: {exc.strerror}; pick another --weights-dir") from exc
    if not entry.urls:
        raise FetchError(f"no download location is known for {entry.name}; place {entry.filename} in {dest_dir}")
    target = dest_dir / entry.filename
    expected = expected_file(entry, timeout)
    accept = _acceptance(entry, expected)
    errors: list[str] = []
    for url in entry.urls:
        try:
            download(url, target, expected.sha256, expected.file_bytes, progress=progress, timeout=timeout,
                     accept=accept)  # fmt: skip
        except _Refused:
            raise
        except FetchError as exc:
            errors.append(str(exc))
            log.info("%s; trying the next location", exc)
            continue
        if entry.sha256_lists and not expected.sha256:
            log.warning("%s: no ModelScope file list could be read; checked by its tensors only", entry.name)
        checks = [f"sha256 matches {expected.sha256_source}"] if expected.sha256 else []
        if expected.crc32:
            checks.append("crc32 matches FaceFusion's .hash")
        if entry.is_upscaler:
            checks.append(check_upscaler(entry, target))
        elif entry.fmt == "torch":
            checks.append(f"tensors match {entry.name}")
        elif not expected.sha256:
            checks.append(f"a {entry.size}-px GPEN restorer in onnxruntime")
        return FetchResult(target, sha256_file(target), bool(expected.sha256 or expected.crc32), True, tuple(checks))
    url = entry.urls[0]
    served = served_name(url) if served_name(url) in entry.filenames else entry.filename
    # the most telling failure: a mirror that answered but broke off says more than one that has no such file
    telling = next((e for e in errors if not e.startswith("cannot reach") and "HTTP 404" not in e), errors[0])
    raise FetchError(f"{telling}; download {served} by hand ({url}) and place it in {dest_dir}")


def served_name(url: str) -> str:
    """The file name a URL serves: ModelScope's ``FilePath=`` query, else the last part of the path."""
    parts = urllib.parse.urlsplit(url)
    file_path = urllib.parse.parse_qs(parts.query).get("FilePath")
    if file_path:
        return Path(file_path[0]).name
    return Path(urllib.parse.unquote(parts.path)).name


def expected_file(entry: ModelEntry, timeout: float = 30.0) -> ExpectedFile:
    """The published facts of an entry, completed from ModelScope's file list and FaceFusion's ``.hash``."""
    sha256, source, size = entry.sha256 or None, "the registry", entry.file_bytes
    if sha256 is None:
        for list_url, path in entry.sha256_lists:
            try:
                sha256, listed_size = listed_sha256(list_url, path, timeout)
            except FetchError as exc:
                log.info("%s", exc)
                continue
            source, size = "ModelScope's file list", size or listed_size
            break
    crc32 = None
    for hash_url in entry.crc32_urls:
        try:
            crc32 = _parse_crc32(_get_small(hash_url, timeout), hash_url)
        except FetchError as exc:
            log.info("%s", exc)
            continue
        break
    return ExpectedFile(sha256, source if sha256 else "", size, crc32)


def listed_sha256(list_url: str, path: str, timeout: float = 30.0) -> tuple[str, int | None]:
    """(SHA-256, size) of ``path`` in a ModelScope file list (``{"Data": {"Files": [{"Path", "Sha256", ...}]}}``)."""
    host = urllib.parse.urlsplit(list_url).hostname or list_url
    try:
        data = json.loads(_get_small(list_url, timeout))
        files = data["Data"]["Files"]
    except (ValueError, KeyError, TypeError) as exc:
        raise FetchError(f"{host}: the file list at {list_url} is not ModelScope's format ({exc})") from exc
    for item in files:
        if isinstance(item, dict) and path in (item.get("Path"), item.get("Name")) and item.get("Sha256"):
            size = item.get("Size")
            return str(item["Sha256"]).lower(), int(size) if isinstance(size, int) and size > 0 else None
    raise FetchError(f"{host}: {path} is not in the file list at {list_url}")


def _get_small(url: str, timeout: float) -> bytes:
    host = urllib.parse.urlsplit(url).hostname or url
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.read(SMALL_LIMIT)
    except urllib.error.HTTPError as exc:
        raise FetchError(f"{host} answered HTTP {exc.code} {exc.reason} for {url}") from exc
    except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as exc:
        raise FetchError(f"cannot reach {host}: {getattr(exc, 'reason', exc)}") from exc


def _parse_crc32(data: bytes, where: str) -> str:
    text = data.decode("ascii", "replace").strip().lower()
    if len(text) != 8 or any(c not in "0123456789abcdef" for c in text):
        raise FetchError(f"{where} is not a CRC32 hash file (expected 8 hex digits)")
    return text


class _Refused(FetchError):
    """A complete download that is not the file it should be: never retried from another mirror."""


def _acceptance(entry: ModelEntry, expected: ExpectedFile) -> Callable[[Path], None]:
    """The checks a complete ``.part`` file must pass, past size and SHA-256, before it is renamed."""

    def accept(part: Path) -> None:
        if expected.crc32:
            got = crc32_file(part)
            if got != expected.crc32:
                raise _Refused(f"{entry.filename} failed its crc32 check ({got}, expected {expected.crc32})")
        try:
            if entry.is_upscaler:
                check_upscaler(entry, part)
            elif entry.fmt == "torch":
                from gpen_video.models.checkpoint import check_architecture

                check_architecture(part, entry.architecture, entry.name, source=entry.filename)
            elif not expected.sha256:  # an ONNX file of unknown hash: it must be a GPEN restorer of the size
                from gpen_video.models.onnx_backend import OnnxRestorer

                size = OnnxRestorer(part, device="cpu").size
                if size != entry.size:
                    raise _Refused(f"{entry.filename} takes {size}×{size} crops, but {entry.name} is {entry.size} px")
        except _Refused:
            raise
        except GpenVideoError as exc:
            raise _Refused(str(exc)) from exc

    return accept


def check_upscaler(entry: ModelEntry, path: Path) -> str:
    """That ``path`` is the RRDBNet ``entry`` names: loaded with ``weights_only``, strict official keys, its scale.

    Returns what was checked, in words; raises ``ModelError`` (not an RRDBNet, a key missing or extra, a
    tensor of the wrong shape) or ``FetchError`` (an RRDBNet of another scale).
    """
    from gpen_video.models.rrdbnet import model_from_state_dict, read_rrdb_state_dict

    config = model_from_state_dict(read_rrdb_state_dict(path), source=entry.filename).config
    if config.scale != entry.scale:
        raise FetchError(
            f"{entry.filename} is an RRDBNet x{config.scale}, but {entry.name} is x{entry.scale}; the file is misnamed"
        )
    return f"{config.describe()}: official keys, scale matches {entry.name}"


def download(
    url: str,
    target: Path,
    sha256: str | None = None,
    expected_bytes: int | None = None,
    progress: bool = False,
    timeout: float = 30.0,
    accept: Callable[[Path], None] | None = None,
) -> Path:
    """Download ``url`` to ``target`` via ``target.part`` (resumed if present), check, rename atomically.

    ``accept`` runs on the complete ``.part`` file after the size and SHA-256 checks; a ``FetchError`` from
    it deletes the file (it is whole but wrong) and is raised.
    """
    target = Path(target)
    part = target.with_name(target.name + ".part")
    host = urllib.parse.urlsplit(url).hostname or url
    have = part.stat().st_size if part.exists() else 0
    response = _open_resumed(url, host, have, timeout)
    if response is not None:
        with response:
            _receive(response, part, have, expected_bytes, progress, target.name, host)
    _check_part(part, target.name, host, sha256, expected_bytes)
    if accept is not None:
        try:
            accept(part)
        except FetchError as exc:
            part.unlink(missing_ok=True)
            raise _Refused(f"{target.name} from {host} was refused and deleted: {exc}") from exc
    os.replace(part, target)
    return target


def _open_resumed(url: str, host: str, have: int, timeout: float):
    """The response for ``url`` from byte ``have`` on; None when the server says the ``.part`` is complete."""
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        return urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # the .part is already complete
            return None
        raise FetchError(f"{host} answered HTTP {exc.code} {exc.reason} for {url}") from exc
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise FetchError(f"cannot reach {host}: {reason}") from exc


def _receive(response, part: Path, have: int, expected_bytes: int | None, progress: bool, name: str, host: str) -> None:
    """Write the body onto ``part`` (after its ``have`` bytes, if the server resumes); FetchError if it broke off."""
    status = getattr(response, "status", 200)
    if have and status != 206:
        log.info("%s does not resume downloads; starting %s again", host, name)
        have = 0
    length = response.headers.get("Content-Length")
    expected_now = int(length) if length and length.isdigit() else None
    total = have + expected_now if expected_now is not None else expected_bytes
    try:
        got = _stream(response, part, append=have > 0, total=total, initial=have, progress=progress, name=name)
    except (OSError, urllib.error.URLError, http.client.HTTPException) as exc:
        broke = str(exc) or type(exc).__name__
    else:  # urllib returns a short body without complaint when the peer hangs up early
        short = expected_now is not None and got < expected_now
        broke = f"after {have + got} of {total} bytes" if short else ""
    if broke:
        raise FetchError(f"download of {name} from {host} broke off ({broke}); run the same command to resume it")


def _check_part(part: Path, name: str, host: str, sha256: str | None, expected_bytes: int | None) -> None:
    """Check a finished ``.part`` file's size and SHA-256; one that is whole but wrong is deleted (``_Refused``)."""
    size = part.stat().st_size
    if expected_bytes is not None and size > expected_bytes:  # longer than the file is: wrong, not unfinished
        part.unlink(missing_ok=True)
        raise _Refused(f"{name} from {host}: got {size} bytes, expected {expected_bytes}; deleted it")
    if expected_bytes is not None and size != expected_bytes:
        raise FetchError(f"{name}: got {size} bytes, expected {expected_bytes}; run the same command again to resume")
    if sha256:
        digest = sha256_file(part)
        if digest.lower() != sha256.lower():
            part.unlink(missing_ok=True)
            raise _Refused(
                f"{name} from {host} failed its checksum (sha256 {digest}, expected {sha256}); deleted it — "
                "try again, or download it by hand"
            )


def _stream(response, part: Path, append: bool, total: int | None, initial: int, progress: bool, name: str) -> int:
    """Append the response body to ``part``; returns the number of bytes written."""
    bar = None
    written = 0
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024, desc=name)
    try:
        with open(part, "ab" if append else "wb") as f:
            while block := response.read(CHUNK):
                f.write(block)
                written += len(block)
                if bar is not None:
                    bar.update(len(block))
            f.flush()
            os.fsync(f.fileno())
    finally:
        if bar is not None:
            bar.close()
    return written


def _check_hash(entry: ModelEntry, path: Path, digest: str) -> None:
    if entry.sha256 and digest.lower() != entry.sha256.lower():
        raise FetchError(
            f"{path} does not match the published sha256 of {entry.name} ({digest} != {entry.sha256}); "
            "delete it and run: gpen-video weights fetch " + entry.name
        )
