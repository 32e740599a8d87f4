"""torch.compile in batch buckets: uneven batches compile once per bucket, a recompile or a give-up is logged,
and padding a batch to its bucket changes no real face (compiles counted with a backend of the test's own)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
import torch._dynamo
from model_helpers import random_faces, random_state_dict
from torch import nn

from gpen_video.models import load_generator
from gpen_video.models.compiled import CompiledForward, bucket, bucket_at_most, buckets_up_to
from gpen_video.models.torch_backend import TorchRestorer

UNEVEN = (1, 3, 2, 5, 1, 7)


class CountingBackend:
    """A ``torch.compile`` backend that runs the traced graph as it is and records the batch of each graph it was
    given (the graph input shaped ``(N, *sample)``; the weights are graph inputs too)."""

    def __init__(self, sample: tuple[int, ...]) -> None:
        self.sample = sample
        self.batches: list[int] = []

    def __call__(self, gm: torch.fx.GraphModule, inputs: list) -> object:
        self.batches += [int(t.shape[0]) for t in inputs if isinstance(t, torch.Tensor) and t.shape[1:] == self.sample]
        return gm.forward


class Tiny(nn.Module):
    """Stands in for GPEN where only the compiling is tested: dynamo traces it in a fraction of a second."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.gain = 2.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.leaky_relu(self.conv(x), 0.2) * self.gain


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()  # other tests' graphs of the same code would count against the recompile limit
    yield
    torch._dynamo.reset()


def test_buckets():
    assert [bucket(n) for n in range(1, 10)] == [1, 2, 4, 4, 8, 8, 8, 8, 16]
    assert [bucket_at_most(n) for n in (0, 1, 3, 4, 7, 16, 17)] == [1, 1, 2, 4, 4, 16, 16]
    assert buckets_up_to(5) == [1, 2, 4, 8] and buckets_up_to(1) == [1]


def test_uneven_batches_compile_once_per_bucket():
    backend = CountingBackend((3, 8, 8))
    model = Tiny().eval()
    forward = CompiledForward(model, "tiny", backend)
    x = torch.rand(7, 3, 8, 8)
    with torch.inference_mode():
        for _ in range(2):  # the second round compiles nothing
            for n in UNEVEN:
                assert torch.allclose(forward(x[:n]), model(x[:n]), atol=1e-6)
    assert sorted(backend.batches) == [1, 2, 4, 8]
    assert forward.compiles == 4 and {s[0] for s in forward.shapes} == {1, 2, 4, 8}


def test_a_recompile_is_logged(caplog):
    model = Tiny().eval()
    forward = CompiledForward(model, "tiny", CountingBackend((3, 8, 8)))
    x = torch.rand(2, 3, 8, 8)
    with torch.inference_mode(), caplog.at_level(logging.INFO, logger="gpen_video.models.compiled"):
        forward(x)
        model.gain = 3.0  # a guarded constant: the same shape compiles again
        assert torch.allclose(forward(x), model(x), atol=1e-6)
    assert forward.compiles == 2
    assert [r.levelname for r in caplog.records] == ["INFO", "WARNING"]
    assert "compiled again for batches of 2" in caplog.records[1].getMessage()


def test_recompile_limit_falls_back_to_eager_loudly(caplog):
    model = Tiny().eval()
    forward = CompiledForward(model, "tiny", CountingBackend((3, 8, 8)))
    x = torch.rand(4, 3, 8, 8)
    with torch._dynamo.config.patch(recompile_limit=1), torch.inference_mode():
        forward(x[:1])
        with caplog.at_level(logging.WARNING, logger="gpen_video.models.compiled"):
            out = forward(x)  # a second shape: past the limit, a hard error under fullgraph, then eager
    assert forward.eager and torch.allclose(out, model(x), atol=1e-6)
    assert "could not compile tiny for batches of 4 (FailOnRecompileLimitHit" in caplog.text


def test_a_failing_compiler_falls_back_loudly(caplog):
    def broken(gm, inputs):
        raise RuntimeError("no C compiler here")

    model = Tiny().eval()
    forward = CompiledForward(model, "tiny", broken)
    x = torch.rand(3, 3, 8, 8)
    with torch.inference_mode(), caplog.at_level(logging.WARNING, logger="gpen_video.models.compiled"):
        assert torch.allclose(forward(x), model(x), atol=1e-6)
    assert forward.eager and "could not compile tiny for batches of 4" in caplog.text
    assert "(BackendCompilerFailed from RuntimeError: no C compiler here)" in caplog.text


def test_the_restorer_name_says_whether_it_runs_compiled():
    from torch._dynamo.exc import FailOnRecompileLimitHit

    sd = random_state_dict(16, 2, 0.25, 1, style_dim=16, seed=61)
    restorer = TorchRestorer(load_generator(sd)[0], compile=True)
    assert restorer.name == "gpen-16 torch cpu fp32 compiled"

    def over_the_limit(x):
        raise FailOnRecompileLimitHit("Hard failure due to fullgraph=True")

    restorer.compiled.compiled = over_the_limit
    faces = random_faces(2, 16, seed=4)
    assert np.array_equal(restorer.restore(faces), TorchRestorer(load_generator(sd)[0]).restore(faces))
    assert restorer.name == "gpen-16 torch cpu fp32"


def test_padding_to_the_bucket_keeps_every_real_face():
    """GPEN compiled (traced by dynamo, run as traced): 3 faces run as 4 and come out as 3 faces of an unpadded
    eager forward; 4 faces reuse the graph."""
    backend = CountingBackend((3, 16, 16))
    sd = random_state_dict(16, 2, 0.25, 1, style_dim=16, seed=62)
    compiled = TorchRestorer(load_generator(sd)[0], compile=True, compile_backend=backend)
    eager = TorchRestorer(load_generator(sd)[0])
    faces = random_faces(4, 16, seed=5)
    got = compiled.restore(faces[:3])
    want = eager.restore(faces[:3])
    assert got.shape == want.shape
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1 and (got == want).mean() > 0.99
    compiled.restore(faces)
    assert backend.batches == [4] and compiled.forward_limit() is None


def _recording(restorer: TorchRestorer, fits: int) -> list[int]:
    """Stand in for the compiled graph: record each forward's batch, run out of memory above ``fits``."""
    seen: list[int] = []

    def graph(x: torch.Tensor) -> torch.Tensor:
        seen.append(x.shape[0])
        if x.shape[0] > fits:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 8.00 GiB")
        return restorer.model(x)

    restorer.compiled.compiled = graph
    return seen


def test_out_of_memory_halving_stays_in_buckets():
    sd = random_state_dict(16, 2, 0.25, 1, style_dim=16, seed=63)
    restorer = TorchRestorer(load_generator(sd)[0], compile=True)
    seen = _recording(restorer, fits=4)
    faces = random_faces(7, 16, seed=6)
    got = restorer.restore(faces)
    assert np.abs(got.astype(int) - TorchRestorer(load_generator(sd)[0]).restore(faces).astype(int)).max() <= 1
    assert seen == [8, 4, 4, 4] and restorer.forward_limit() == 3  # 7 -> 3 + 3 + 1, each run as 4


def test_warm_up_compiles_each_bucket_largest_first():
    sd = random_state_dict(16, 2, 0.25, 1, style_dim=16, seed=64)
    restorer = TorchRestorer(load_generator(sd)[0], compile=True, warm=False)
    seen = _recording(restorer, fits=4)
    restorer.warm_up(5)
    assert seen == [8, 4, 4, 2, 1], "8 ran out of memory: halved to 4 (twice), then 2 and 1"
    assert restorer.forward_limit() == 4
