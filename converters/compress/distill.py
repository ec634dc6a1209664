"""Knowledge distillation: train a small student to mimic a teacher's soft outputs (needs PyTorch).

The teacher is any model :func:`edge_runtime.load` runs (float ONNX, float or int8 .tflite): its
outputs on the user's *unlabeled* data come from our runtime, not from the training framework.
The student is one of a few parameterised architectures (:func:`parse_student`):

- ``mlp:hidden=64x32``: flatten, fully connected layers with ReLU, then the output layer;
- ``dscnn:channels=12,blocks=2[,stride=1]``: DS-CNN as in keyword spotting: a 3x3 convolution,
  ``blocks`` depthwise-separable blocks (3x3 depthwise + 1x1 pointwise, ReLU after each), global
  average pooling, a fully connected layer;
- ``mobilenet:alpha=0.25,blocks=3[,stride=1]``: MobileNetV1 with width multiplier ``alpha``
  (channels 32, 64, 128, 256, ... times alpha), stride 2 in every depthwise block after the first.

No batch normalisation, so the float ONNX export is plain Conv/Relu/Gemm that the converter
imports directly. Training minimises the temperature-scaled KL divergence between the student's
and the teacher's softened outputs (Hinton et al.; or the MSE between outputs for autoencoders and
regression), on the data plus shifted and noisy copies of it (4-D inputs), whose teacher outputs
are computed once. The student is exported to float ONNX
(opset 13, NCHW as PyTorch writes it) and then converted like any user model.

PyTorch is an optional extra: this module imports it only inside its functions, and only the
``edge-convert distill`` command imports this module.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from edge_runtime.errors import BackendUnavailableError, ConfigError

ARCHS = ("mlp", "dscnn", "mobilenet")


@dataclass(frozen=True)
class StudentSpec:
    """A parsed ``--student`` string."""

    arch: str
    hidden: tuple[int, ...] = (64, 32)
    channels: int = 12
    blocks: int = 2
    alpha: float = 0.25
    stride: int = 1

    def describe(self) -> str:
        """The spec back as a string."""
        if self.arch == "mlp":
            return "mlp:hidden=" + "x".join(str(h) for h in self.hidden)
        if self.arch == "dscnn":
            return f"dscnn:channels={self.channels},blocks={self.blocks},stride={self.stride}"
        return f"mobilenet:alpha={self.alpha:g},blocks={self.blocks},stride={self.stride}"


def parse_student(spec: str) -> StudentSpec:
    """Parse ``arch[:key=value,...]`` (see the module docstring); raise ConfigError naming the problem."""
    arch, _, rest = spec.strip().partition(":")
    arch = arch.strip().lower()
    if arch not in ARCHS:
        raise ConfigError(f"--student {spec!r}: unknown architecture {arch!r}; choose from {', '.join(ARCHS)}")
    allowed = {"mlp": {"hidden"}, "dscnn": {"channels", "blocks", "stride"},
               "mobilenet": {"alpha", "blocks", "stride"}}[arch]
    kw: dict[str, Any] = {}
    for item in filter(None, (s.strip() for s in rest.split(","))):
        key, eq, val = item.partition("=")
        key = key.strip()
        if not eq or key not in allowed:
            raise ConfigError(f"--student {spec!r}: {item!r} is not one of {', '.join(sorted(allowed))} (key=value)")
        try:
            if key == "hidden":
                kw[key] = tuple(int(v) for v in re.split(r"[x/]", val) if v)
                if not kw[key] or min(kw[key]) < 1:
                    raise ValueError
            elif key == "alpha":
                kw[key] = float(val)
                if not 0.0 < kw[key] <= 4.0:
                    raise ValueError
            else:
                kw[key] = int(val)
                if kw[key] < 1 or (key == "stride" and kw[key] > 2) or kw[key] > 4096:
                    raise ValueError
        except ValueError:
            raise ConfigError(f"--student {spec!r}: bad value {val!r} for {key}") from None
    return StudentSpec(arch, **kw)


def _torch():  # type: ignore[no-untyped-def]
    try:
        import torch
    except ImportError:
        raise BackendUnavailableError("distillation needs PyTorch, an optional extra: pip install torch==2.13.0 "
                                      "(the CPU build)") from None
    return torch


def build_student(spec: StudentSpec, input_shape: tuple[int, ...], outputs: int) -> Any:
    """The torch module for ``spec``; ``input_shape`` is one sample's shape without the batch (C, H, W) or (N,)."""
    torch = _torch()
    nn = torch.nn
    if spec.arch == "mlp":
        layers: list[Any] = [nn.Flatten()]
        width = int(np.prod(input_shape))
        for h in spec.hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, outputs))
        return nn.Sequential(*layers)
    if len(input_shape) != 3:
        raise ConfigError(f"student {spec.arch} needs image-like inputs (C, H, W); this teacher takes {input_shape}")
    cin = input_shape[0]

    def dw_block(c_in: int, c_out: int, stride: int) -> list[Any]:
        return [nn.Conv2d(c_in, c_in, 3, stride=stride, padding=1, groups=c_in), nn.ReLU(),
                nn.Conv2d(c_in, c_out, 1), nn.ReLU()]

    if spec.arch == "dscnn":
        c = spec.channels
        layers = [nn.Conv2d(cin, c, 3, stride=spec.stride, padding=1), nn.ReLU()]
        for _ in range(spec.blocks):
            layers += dw_block(c, c, 1)
    else:
        widths = [max(4, int(round(32 * spec.alpha * 2 ** i))) for i in range(spec.blocks + 1)]
        layers = [nn.Conv2d(cin, widths[0], 3, stride=spec.stride, padding=1), nn.ReLU()]
        h = min(input_shape[1:]) // spec.stride
        for i in range(spec.blocks):
            stride = 2 if i > 0 and h >= 2 else 1
            h //= stride
            layers += dw_block(widths[i], widths[i + 1], stride)
        c = widths[-1]
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, outputs)]
    return nn.Sequential(*layers)


def parameter_count(module: Any) -> int:
    """Number of parameters of a torch module."""
    return int(sum(p.numel() for p in module.parameters()))


def _augment(x: np.ndarray, copies: int, rng: np.random.Generator) -> np.ndarray:
    """``x`` plus ``copies`` shifted (up to 1 pixel) and noisy versions of 4-D samples (N, C, H, W)."""
    out = [x]
    if x.ndim == 4:
        for _ in range(copies):
            dy, dx = rng.integers(-1, 2, size=2)
            shifted = np.roll(x, (int(dy), int(dx)), axis=(2, 3))
            out.append(shifted + rng.normal(0, 0.02 * float(x.std() + 1e-6), size=x.shape).astype(np.float32))
    return np.concatenate(out).astype(np.float32)


@dataclass
class DistillResult:
    """The trained student and its figures."""

    student_onnx: str
    spec: str
    student_params: int
    teacher_params: int
    train_samples: int
    epochs: int
    final_loss: float
    history: list[float] = field(default_factory=list)
    #: up to 256 of the (unaugmented) training inputs in the student's layout: its calibration data
    calibration: Optional[np.ndarray] = field(default=None, repr=False)


def teacher_params(path: "str | os.PathLike[str]") -> int:
    """Weights and biases of the teacher model: the element count of its constant tensors (TFLite) or
    initializers (ONNX)."""
    p = os.fspath(path)
    with open(p, "rb") as f:
        head = f.read(8)
    if head[4:8] == b"TFL3":
        from edge_runtime.formats.tflite import TFLiteModel

        sg = TFLiteModel.open(p).main
        return int(sum(t.num_elements for t in sg.tensors if t.data is not None))
    import onnx

    m = onnx.load(p, load_external_data=False)
    return int(sum(int(np.prod(i.dims)) for i in m.graph.initializer))


def distill(teacher: "str | os.PathLike[str]", spec: "str | StudentSpec", data: Any, out_path: "str | os.PathLike[str]",
            *, epochs: int = 30, temperature: float = 4.0, lr: float = 3e-3, batch_size: int = 64,
            augment: int = 4, seed: int = 0, limit: Optional[int] = None, progress: bool = False,
            loss: str = "auto") -> DistillResult:
    """Train a ``spec`` student on ``data`` (unlabeled) to match ``teacher``; export float ONNX to ``out_path``.

    ``loss``: ``kd`` (temperature-scaled KL divergence, for classifiers), ``mse`` (regression and
    autoencoders: match the outputs themselves) or ``auto`` (``mse`` when the output has the
    input's size, else ``kd``).
    """
    import edge_runtime

    from converters.calibration_data import open_calibration

    torch = _torch()
    if epochs < 1:
        raise ConfigError(f"--epochs must be at least 1, got {epochs}")
    if loss not in ("auto", "kd", "mse"):
        raise ConfigError(f"--loss must be auto, kd or mse, got {loss!r}")
    if temperature <= 0:
        raise ConfigError(f"the temperature must be positive, got {temperature}")
    s = parse_student(spec) if isinstance(spec, str) else spec
    tm = edge_runtime.load(os.fspath(teacher), backend="auto")
    if len(tm.inputs) != 1:
        raise ConfigError(f"{teacher}: distillation supports single-input teachers only")
    ispec, ospec = tm.inputs[0], tm.outputs[0]
    shape = tuple(1 if d < 0 else int(d) for d in ispec.shape)
    ds = open_calibration(data, shape, ispec.name, limit=limit)
    x = np.stack([np.asarray(v, np.float32).reshape(shape) for v in ds])
    nhwc = os.fspath(teacher).lower().endswith(".tflite") or tm.backend in ("litert", "micro")
    if len(shape) == 4 and nhwc:  # the student is NCHW, as PyTorch models are
        x_t = x.reshape(len(x), *shape[1:]).transpose(0, 3, 1, 2)
    else:
        x_t = x.reshape(len(x), *shape[1:])
    rng = np.random.default_rng(seed)
    x_aug = _augment(np.ascontiguousarray(x_t), augment, rng)

    def teach(sample_nchw: np.ndarray) -> np.ndarray:
        v = sample_nchw.transpose(1, 2, 0) if (nhwc and sample_nchw.ndim == 3) else sample_nchw
        v = v.reshape(shape)
        q = ispec.quantize(v) if ispec.quantized else v.astype(ispec.dtype)
        return ospec.dequantize(tm.run(q)[0]).reshape(-1)

    from edge_runtime.progress import track

    soft = np.stack([teach(v) for v in track(x_aug, "teacher outputs", show=bool(progress))])
    tm.close()
    if loss == "auto":
        loss = "mse" if soft.shape[1] == int(np.prod(shape)) else "kd"
    probs = bool(np.all(soft >= 0) and np.allclose(soft.sum(axis=1), 1.0, atol=1e-3))
    logits_t = np.log(np.clip(soft, 1e-8, 1.0)) if probs else soft
    torch.manual_seed(seed)
    model = build_student(s, tuple(x_aug.shape[1:]), soft.shape[1])
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    xt = torch.from_numpy(x_aug)
    tt = torch.from_numpy(logits_t.astype(np.float32))
    history: list[float] = []
    T = float(temperature)
    for _ in track(range(epochs), "distill", show=bool(progress)):
        perm = torch.randperm(len(xt))
        total, n = 0.0, 0
        model.train()
        for i in range(0, len(xt), batch_size):
            idx = perm[i:i + batch_size]
            opt.zero_grad()
            out = model(xt[idx])
            if loss == "mse":
                cost = torch.nn.functional.mse_loss(out, tt[idx])
            else:
                cost = torch.nn.functional.kl_div(torch.log_softmax(out / T, dim=1),
                                                  torch.softmax(tt[idx] / T, dim=1), reduction="batchmean") * T * T
            cost.backward()
            opt.step()
            total += float(cost.detach()) * len(idx)
            n += len(idx)
        sched.step()
        history.append(total / n)
    model.eval()
    out_p = os.fspath(out_path)
    os.makedirs(os.path.dirname(out_p) or ".", exist_ok=True)
    example = torch.from_numpy(x_aug[:1])
    torch.onnx.export(model, (example,), out_p, input_names=["input"], output_names=["output"], opset_version=13,
                      dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}}, dynamo=False)
    calib = np.ascontiguousarray(x_t[:256])[:, None]  # (N, 1, ...): the batch-1 samples of the student input
    return DistillResult(out_p, s.describe(), parameter_count(model), teacher_params(teacher), len(x_aug), epochs,
                         history[-1], history, calib)


__all__ = ["ARCHS", "StudentSpec", "parse_student", "build_student", "parameter_count", "distill",
           "DistillResult", "teacher_params"]
