"""Batched invocation: run ``max_batch_size`` requests in one call where the backend has a batch axis.

A model that implements ``run_batch(stacked_inputs)`` is used as is. For the LiteRT
and tflite-runtime backends the daemon opens a second interpreter on the same
(memory-mapped) file through the backend's own ``import_interpreter``, with the first
axis of every input resized to the batch size. It is used only when

- every input and output has a first dimension of 1,
- the model runs without an accelerator delegate,
- the resized interpreter gives the batch on the first axis of every output, and
- on a check batch its outputs equal the served model's per-sample outputs bit for
  bit (a model whose RESHAPE hard-codes batch 1 fails this and is served per request).

Full batches go through the batched interpreter; a partial batch runs request by request.
Input buffers are allocated once.
"""
from __future__ import annotations

import logging
from typing import Any, Optional

import numpy as np

from edge_runtime.model import Model

log = logging.getLogger("edge_runtime.daemon")


class BatchRunner:
    """Runs exactly ``size`` requests per call."""

    def __init__(self, size: int, run: Any, buffers: list[np.ndarray], how: str) -> None:
        self.size = size
        self._run = run
        self.buffers = buffers
        self.how = how

    def run(self, requests: list[Any]) -> list[list[np.ndarray]]:
        """Outputs per request for a full batch (``len(requests) == size``)."""
        outs = self.run_stacked(requests)
        return [[o[i] for o in outs] for i in range(self.size)]

    def run_stacked(self, requests: list[Any]) -> list[np.ndarray]:
        """Each output of a full batch as one array ``(size, *one request's output shape)``."""
        if len(self.buffers) == 1 and all(r.arrays is None for r in requests):
            # fast-path requests carry their input's bytes: one join makes the batch tensor
            buf = self.buffers[0]
            stacked = [np.frombuffer(b"".join([r.payload for r in requests]), dtype=buf.dtype).reshape(buf.shape)]
        else:
            for k, buf in enumerate(self.buffers):
                for i, r in enumerate(requests):
                    buf[i] = r.arrays[k][0] if r.arrays is not None else np.frombuffer(r.payload, buf.dtype).reshape(buf.shape[1:])
            stacked = self.buffers
        return [o.reshape(self.size, 1, *o.shape[1:]) for o in self._run(stacked)]


def _litert_runner(model: Model, size: int) -> Optional[Any]:
    from edge_runtime.backends import litert

    library = {"ai-edge-litert": "litert", "tflite-runtime": "tflite"}.get(str(model.info.get("library")), "auto")
    mod, _dist, _ver = litert.import_interpreter(library)
    it = mod.Interpreter(model_path=str(model.path), num_threads=model.info.get("threads"))
    ins, outs = it.get_input_details(), it.get_output_details()
    for d, spec in zip(ins, model.inputs):
        it.resize_tensor_input(d["index"], [size, *spec.shape[1:]])
    it.allocate_tensors()
    outs = it.get_output_details()
    for d, spec in zip(outs, model.outputs):
        if tuple(int(v) for v in d["shape"]) != (size, *spec.shape[1:]):
            return None
    in_idx = [d["index"] for d in ins]
    out_idx = [d["index"] for d in outs]

    def run(stacked: list[np.ndarray]) -> list[np.ndarray]:
        for i, a in zip(in_idx, stacked):
            it.set_tensor(i, a)
        it.invoke()
        return [it.get_tensor(i) for i in out_idx]

    return run


def make_batch_runner(model: Model, size: int, seed: int = 0) -> tuple[Optional[BatchRunner], str]:
    """A runner for batches of ``size``, or None and the reason batching is not used."""
    if size < 2:
        return None, "max_batch_size is 1"
    tensors = model.inputs + model.outputs
    if tensors and all(s.shape and s.shape[0] == -1 and min(s.shape[1:], default=1) > 0 for s in tensors):
        # a dynamic batch axis (ONNX): the model takes stacked inputs as they are
        run, how = model._invoke, f"dynamic batch axis, batches of {size}"
    elif any(not s.shape or s.shape[0] != 1 for s in tensors):
        return None, "the model's tensors do not have a batch dimension of 1"
    else:
        run = getattr(model, "run_batch", None)
        how = "model.run_batch"
    if not callable(run):
        if model.backend not in ("litert", "tflite"):
            return None, f"the {model.backend} backend has no batch dimension to resize"
        if model.info.get("accelerator"):
            return None, "the model runs on an accelerator"
        try:
            run = _litert_runner(model, size)
        except Exception as exc:  # noqa: BLE001 - the interpreter refused the resize: serve per request
            return None, f"the interpreter cannot resize the batch axis ({exc})"
        if run is None:
            return None, "the outputs do not follow the resized batch axis"
        how = f"batched interpreter of {size}"
    buffers = [np.empty((size, *s.shape[1:]), dtype=s.dtype) for s in model.inputs]
    one = [(1, *s.shape[1:]) for s in model.inputs]
    runner = BatchRunner(size, run, buffers, how)
    # check: the batch gives the served model's own outputs, bit for bit
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(size):
        arrays = []
        for s in model.inputs:
            if np.dtype(s.dtype).kind in "iu":
                info = np.iinfo(s.dtype)
                arrays.append(rng.integers(info.min, info.max, one[len(arrays)], dtype=s.dtype, endpoint=True))
            else:
                arrays.append(rng.standard_normal(one[len(arrays)]).astype(s.dtype))
        samples.append(arrays)

    class _R:
        __slots__ = ("arrays", "payload")

        def __init__(self, arrays: list[np.ndarray]) -> None:
            self.arrays = arrays
            self.payload = None

    try:
        got = runner.run([_R(a) for a in samples])
        for arrays, outs in zip(samples, got):
            ref = model.run(arrays)
            if not all(np.array_equal(a, b) for a, b in zip(ref, outs)):
                return None, "batched outputs differ from per-sample outputs"
    except Exception as exc:  # noqa: BLE001 - any failure means: serve per request
        return None, f"the batch check failed ({exc})"
    return runner, how
