"""Download model files: resumable, hash-checked, and moved into place atomically.

The download goes to ``<file>.part`` in the destination folder; an interrupted run resumes it with an
HTTP ``Range`` request. Only a complete file whose SHA-256 matches (when one is known) is renamed to its
final name, so a file under the final name is always whole.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from gpen_video.errors import FetchError
from gpen_video.models.registry import ModelEntry, default_download_dir, find_file, get_entry

log = logging.getLogger(__name__)

CHUNK = 1 << 20
USER_AGENT = "gpen-video (+https://github.com/)"


@dataclass(frozen=True)
class FetchResult:
    path: Path
    sha256: str
    verified: bool  # False: no published hash to check against
    downloaded: bool  # False: the file was already there


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def fetch_model(
    name: str, weights_dir: str | Path | None = None, progress: bool = False, timeout: float = 30.0
) -> FetchResult:
    """Make a registry model's file present locally (download if needed) and return where it is."""
    entry = get_entry(name)
    existing = find_file(entry.filenames, weights_dir)
    if existing is not None:
        digest = sha256_file(existing)
        _check_hash(entry, existing, digest)
        return FetchResult(existing, digest, entry.verified, downloaded=False)
    dest_dir = default_download_dir(weights_dir)
    return download_entry(entry, dest_dir, progress=progress, timeout=timeout)


def download_entry(entry: ModelEntry, dest_dir: Path, progress: bool = False, timeout: float = 30.0) -> FetchResult:
    """Try each of the entry's URLs in turn; the first that completes wins."""
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FetchError(f"cannot create {dest_dir}: {exc.strerror}; pick another --weights-dir") from exc
    errors: list[str] = []
    for url in entry.urls:
        # a mirror may serve the file under its own name (ModelScope's pytorch_model-2048.pt); keep that name
        filename = _url_filename(url) if _url_filename(url) in entry.filenames else entry.filename
        target = dest_dir / filename
        try:
            download(url, target, entry.sha256 or None, entry.file_bytes, progress=progress, timeout=timeout)
        except FetchError as exc:
            if "checksum" in str(exc):
                raise
            errors.append(str(exc))
            log.warning("%s", exc)
            continue
        digest = sha256_file(target)
        return FetchResult(target, digest, entry.verified, downloaded=True)
    if not errors:
        raise FetchError(f"no download location is known for {entry.name}; place {entry.filename} in {dest_dir}")
    raise FetchError(f"{errors[0]}; download {entry.filename} by hand ({entry.urls[0]}) and place it in {dest_dir}")


def _url_filename(url: str) -> str:
    return Path(urllib.parse.unquote(urllib.parse.urlsplit(url).path)).name


def download(
    url: str,
    target: Path,
    sha256: str | None = None,
    expected_bytes: int | None = None,
    progress: bool = False,
    timeout: float = 30.0,
) -> Path:
    """Download ``url`` to ``target`` via ``target.part`` (resumed if present), check, rename atomically."""
    target = Path(target)
    part = target.with_name(target.name + ".part")
    host = urllib.parse.urlsplit(url).hostname or url
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # the .part is already complete
            response = None
        else:
            raise FetchError(f"{host} answered HTTP {exc.code} {exc.reason} for {url}") from exc
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise FetchError(f"cannot reach {host}: {reason}") from exc
    if response is not None:
        with response:
            status = getattr(response, "status", 200)
            if have and status != 206:
                log.info("%s does not resume downloads; starting %s again", host, target.name)
                have = 0
            length = response.headers.get("Content-Length")
            expected_now = int(length) if length and length.isdigit() else None
            total = have + expected_now if expected_now is not None else expected_bytes
            try:
                got = _stream(
                    response, part, append=have > 0, total=total, initial=have, progress=progress, name=target.name
                )
            except (OSError, urllib.error.URLError, http.client.HTTPException) as exc:
                broke = str(exc) or type(exc).__name__
            else:  # urllib returns a short body without complaint when the peer hangs up early
                short = expected_now is not None and got < expected_now
                broke = f"after {have + got} of {total} bytes" if short else ""
            if broke:
                raise FetchError(
                    f"download of {target.name} from {host} broke off ({broke}); run the same command to resume it"
                )
    size = part.stat().st_size
    if expected_bytes is not None and size != expected_bytes:
        raise FetchError(
            f"{target.name}: got {size} bytes, expected {expected_bytes}; run the same command again to resume"
        )
    if sha256:
        digest = sha256_file(part)
        if digest.lower() != sha256.lower():
            part.unlink(missing_ok=True)
            raise FetchError(
                f"{target.name} from {host} failed its checksum (sha256 {digest}, expected {sha256}); deleted it — "
                "try again, or download it by hand"
            )
    os.replace(part, target)
    return target


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
