"""The loaded sentence-transformers model, run by ONNX Runtime instead of torch.

For one short text (a search query) torch spends most of its time in per-operator
overhead: all-MiniLM-L6-v2 took 15.8 ms per query here where ONNX Runtime took 6.7, with
vectors equal to 1e-7. So once the torch model is loaded, its transformer, mean pooling
and normalisation are exported to an ``.onnx`` file in the data directory (once, ~3 s;
written to a temporary name and renamed, so a concurrent process never reads half a file)
and every later start loads that file. Before a session is used its vectors are compared
with torch's on probe texts; a file that disagrees (another export, a corrupted or
foreign file) is exported again, and if that does not agree either the model stays on
torch. Only the plain pipeline (Transformer, mean Pooling, optional Normalize) is
exported; any other stays on torch.

A BERT-family model is traced with transformers' plain attention and its graph is then
fused by ONNX Runtime's transformer optimizer (one Attention operator per layer, fused
layer norms and GELU): 6.8 ms per LoCoMo question where the graph traced with PyTorch's
fused attention took 7.5, vectors equal to 2e-7. A fused graph that disagrees with torch
is exported again unfused.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["OnnxEncoder", "onnx_encoder"]

logger = logging.getLogger(__name__)

_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
_PROBES = (
    "Where does the deploy script live?",
    "",
    "The staging database is reset every night at 02:00 UTC; the flaky login test "
    "depends on the clock of the CI runner.",
    "naïve café — 東京 🚀",
    "a much longer text that the tokenizer truncates " * 60,
)
_TOLERANCE = 1e-4
"""Largest difference allowed between torch's and ONNX Runtime's vector components."""


class OnnxEncoder:
    """Unit-length embeddings of a plain sentence-transformers pipeline, by ONNX Runtime."""

    def __init__(self, model: Any, session: Any, inputs: tuple[str, ...], batch_size: int
                 ) -> None:
        self._model = model  # for its tokenizer (the exact preprocessing of the torch path)
        self._session = session
        self._inputs = inputs
        self._batch_size = batch_size

    def encode(self, texts: list[str]) -> np.ndarray:
        """One row per text, in order (batches of similar lengths, as torch's encode)."""
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        rows: list[np.ndarray] = [np.empty(0, dtype=np.float32)] * len(texts)
        for start in range(0, len(order), self._batch_size):
            chunk = order[start:start + self._batch_size]
            vectors = self._run([texts[i] for i in chunk])
            for i, vector in zip(chunk, vectors, strict=True):
                rows[i] = vector
        return np.stack(rows) if rows else np.empty((0, 0), dtype=np.float32)

    def _run(self, texts: list[str]) -> np.ndarray:
        preprocess = getattr(self._model, "preprocess", None) or self._model.tokenize
        features = preprocess(texts)
        feed = {name: features[name].numpy().astype(np.int64) for name in self._inputs}
        [vectors] = self._session.run(None, feed)
        return np.asarray(vectors, dtype=np.float32)


def _plain_pipeline(model: Any) -> Any | None:
    """The Hugging Face module of a Transformer -> mean Pooling [-> Normalize] pipeline,
    or None for any other."""
    modules = list(model)
    names = [type(m).__name__ for m in modules]
    if names not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]):
        return None
    pooling = modules[1]
    mode = getattr(pooling, "pooling_mode", None)
    if mode is None and hasattr(pooling, "get_pooling_mode_str"):
        mode = pooling.get_pooling_mode_str()
    if mode != "mean":
        return None
    return getattr(modules[0], "auto_model", None)


@contextlib.contextmanager
def _eager_attention(hf_module: Any) -> Iterator[bool]:
    """The module with transformers' plain ("eager") attention while the block runs, when
    it can switch (yields whether it did). Traced with PyTorch's fused attention the graph
    hides the attention pattern that ONNX Runtime's optimizer fuses into one operator."""
    setter = getattr(hf_module, "set_attn_implementation", None)
    original = getattr(getattr(hf_module, "config", None), "_attn_implementation", None)
    if setter is None or original is None or original == "eager":
        yield original == "eager"
        return
    try:
        setter("eager")
    except Exception:  # a model that cannot switch: traced as it is
        yield False
        return
    try:
        yield True
    finally:
        setter(original)


def _fuse(path: str, config: Any) -> None:
    """Fuse a BERT-family graph's attention, layer norms and GELU in place with ONNX
    Runtime's transformer optimizer (0.66 ms of 7.5 per query here, equal vectors to
    2e-7). Any other model, or an optimizer that is unavailable or fails, keeps the plain
    graph."""
    if getattr(config, "model_type", None) != "bert":
        return
    heads = getattr(config, "num_attention_heads", None)
    hidden = getattr(config, "hidden_size", None)
    if not isinstance(heads, int) or not isinstance(hidden, int):
        return
    try:
        known = set(logging.root.manager.loggerDict)
        from onnxruntime.transformers import optimizer

        # Its modules log every fusion at INFO under top-level names (fusion_base,
        # onnx_model, ...), which would land in the server's log: errors only.
        for name in set(logging.root.manager.loggerDict) - known:
            logging.getLogger(name).setLevel(logging.ERROR)
        fused = optimizer.optimize_model(path, model_type="bert", num_heads=heads,
                                         hidden_size=hidden, opt_level=0)
        fused.save_model_to_file(path)
    except Exception:
        logger.info("the ONNX graph stays unfused (the optimizer failed)", exc_info=True)


def _export(model: Any, hf_module: Any, inputs: tuple[str, ...], target: Path, *,
            fuse: bool) -> None:
    import torch

    class Pipeline(torch.nn.Module):  # type: ignore[misc]  # torch is Any here (pyproject)
        def __init__(self) -> None:
            super().__init__()
            self.hf = hf_module

        def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
            named = dict(zip(inputs, tensors, strict=True))
            hidden = self.hf(**named).last_hidden_state
            mask = named["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2, dim=1)

    preprocess = getattr(model, "preprocess", None) or model.tokenize
    sample = preprocess(["an example sentence for tracing"])
    dynamic = {name: {0: "batch", 1: "tokens"} for name in inputs}
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        # The TorchScript exporter is deprecated but needs no onnxscript, and it warns
        # about tracing (data-dependent branches the traced shapes fix): expected here,
        # and the exported file is checked against torch before it is used.
        with contextlib.ExitStack() as stack:
            eager = stack.enter_context(_eager_attention(hf_module)) if fuse else False
            stack.enter_context(torch.inference_mode(False))
            stack.enter_context(torch.no_grad())
            stack.enter_context(warnings.catch_warnings())
            warnings.simplefilter("ignore")
            torch.onnx.export(
                Pipeline().eval(), tuple(sample[name] for name in inputs), tmp,
                input_names=list(inputs), output_names=["embedding"],
                dynamic_axes={**dynamic, "embedding": {0: "batch"}},
                opset_version=17, dynamo=False,
            )
        if eager:
            _fuse(tmp, getattr(hf_module, "config", None))
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _session(path: Path, threads: int) -> Any:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
    options.log_severity_level = 3  # errors only: the server's stderr is its log
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _agrees(encoder: OnnxEncoder, reference: np.ndarray) -> bool:
    got = encoder.encode(list(_PROBES))
    return got.shape == reference.shape and float(np.abs(got - reference).max()) <= _TOLERANCE


def onnx_encoder(model: Any, model_id: str, cache_dir: Path, *, threads: int,
                 batch_size: int) -> OnnxEncoder | None:
    """An encoder equivalent to ``model`` on ONNX Runtime, exporting it to ``cache_dir``
    when needed; None when the pipeline is not a plain one or the export does not agree
    with torch (the reason is logged)."""
    hf_module = _plain_pipeline(model)
    if hf_module is None:
        logger.info("embedding model %s stays on torch (not a plain mean-pooling pipeline)",
                    model_id)
        return None
    features = (getattr(model, "preprocess", None) or model.tokenize)(["probe"])
    inputs = tuple(name for name in _INPUTS if name in features)
    reference = model.encode(list(_PROBES), normalize_embeddings=True, convert_to_numpy=True,
                             show_progress_bar=False, batch_size=batch_size)
    path = cache_dir / (re.sub(r"[^A-Za-z0-9._@-]", "_", model_id) + ".onnx")
    expected = np.asarray(reference, dtype=np.float32)

    def attempt(export: bool, fuse: bool = True) -> OnnxEncoder | None:
        if export:
            _export(model, hf_module, inputs, path, fuse=fuse)
        try:
            encoder = OnnxEncoder(model, _session(path, threads), inputs, batch_size)
        except Exception as exc:  # an unreadable file: ONNX Runtime's own error types
            logger.warning("cannot load %s (%s)", path.name, type(exc).__name__)
            return None
        return encoder if _agrees(encoder, expected) else None

    if path.is_file():
        if (encoder := attempt(export=False)) is not None:
            logger.info("embedding model %s runs on ONNX Runtime (%s)", model_id, path.name)
            return encoder
        logger.warning("the ONNX file %s does not match the model; exporting it again",
                       path.name)
    if (encoder := attempt(export=True)) is not None or (
        encoder := attempt(export=True, fuse=False)  # in case the fused graph disagrees
    ) is not None:
        logger.info("embedding model %s runs on ONNX Runtime (exported %s)", model_id,
                    path.name)
        return encoder
    logger.warning("the ONNX export of %s does not match torch; it stays on torch", model_id)
    return None
