"""Read a PyTorch ``.pth``/``.pt`` file's objects safely, with one line for every way a file can be wrong.

``torch.load(weights_only=True)``: a file can never run code. A bad file fails inside torch's unpickler
in many ways (``UnpicklingError``, ``KeyError`` on a text file, ``RuntimeError`` from the zip reader, ``EOFError``
on a cut file); each becomes a :class:`ModelError` that says what the file is and what to do.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch

from gpen_video.errors import ModelError

# a PyTorch file is a zip archive (torch >= 1.6) or a legacy pickle, which starts with the PROTO opcode
LEGACY_PICKLE_START = b"\x80"
REASON_CHARS = 120


def load_torch_file(path: Path) -> object:
    """The objects in the PyTorch file at ``path`` (tensors and plain containers only), on the CPU."""
    is_zip = zipfile.is_zipfile(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=is_zip)
    except pickle.UnpicklingError as exc:
        if is_zip or _starts_like_pickle(path):
            raise ModelError(
                f"refusing to load {path}: it holds Python objects other than tensors, and loading it could run "
                "code; save a plain state_dict or a .safetensors file"
            ) from exc
        raise _not_a_checkpoint(path, None) from exc
    except Exception as exc:  # torch's unpickler and zip reader raise many kinds on a bad file
        raise _not_a_checkpoint(path, exc) from exc


def _starts_like_pickle(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(1) == LEGACY_PICKLE_START


def _not_a_checkpoint(path: Path, exc: BaseException | None) -> ModelError:
    """The one line for a file torch cannot read; ``exc`` adds its first sentence where it says more than that."""
    if path.stat().st_size == 0:
        return ModelError(f"cannot read {path}: the file is empty; download it again")
    first = str(exc).strip().split(". ")[0].splitlines()[0] if exc is not None and str(exc).strip() else ""
    reason = f" ({type(exc).__name__}: {first[:REASON_CHARS]})" if exc is not None else ""
    return ModelError(f"cannot read {path}: truncated or not a PyTorch checkpoint{reason}; download it again")
