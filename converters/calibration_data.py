"""Calibration data: find samples, check their shape against the model, and stream them.

Accepted sources (``open_calibration``):

- a numpy array (or a list of arrays) of samples;
- one ``.npy`` whose first dimension is the sample; it is memory-mapped, never loaded whole;
- one ``.npz``: the array named after the model input, or ``x``, or its only array;
- a directory of ``.npy``/``.npz`` files (each one sample or a stack of samples), of int8 ``.bin``
  files like kws01 (raw bytes of one sample; give ``bin_scale``/``bin_zero_point`` to dequantize),
  or of ``.wav``/image files, which need a ``preprocessor`` callable (path -> float array), for
  example one built from :mod:`edge_runtime.preprocess`.

A model with several inputs takes (:func:`open_calibration_inputs`) a dict ``{input name: array}``, one
``.npz`` holding one array per input name (and optionally labels ``y``, ignored), or a directory of such
``.npz`` files; every input holds the same number of samples, and a sample is then a tuple of arrays
ordered as the graph's inputs.

A sample may carry the batch dimension (shape equal to the model input) or not
(the input shape without its leading 1). Samples are yielded one at a time, as float32 arrays of
the model input's shape in the *source* layout (NCHW for ONNX image models).
"""
from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence, Union

import numpy as np

from edge_runtime.errors import InputError

MEDIA = (".wav", ".png", ".jpg", ".jpeg", ".bmp", ".pgm")
Source = Union[str, "os.PathLike[str]", np.ndarray, Sequence[np.ndarray]]


class CalibrationDataError(InputError):
    """Calibration data is missing, empty, unreadable or of the wrong shape."""


class CalibrationSet:
    """A sized, re-iterable stream of samples: arrays for a one-input model, tuples of arrays (one per input,
    in the graph's order) for a model with several inputs."""

    def __init__(self, items: list, shape: tuple[int, ...], describe: str,
                 load: Callable[[object], np.ndarray]) -> None:
        self._items = items
        self.shape = tuple(shape)
        self.describe = describe
        self._load = load

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[np.ndarray]:
        for item in self._items:
            yield self._load(item)

    def batches(self, batch_size: int) -> Iterator[np.ndarray]:
        """Samples stacked along a new first axis, ``batch_size`` at a time."""
        buf: list[np.ndarray] = []
        for s in self:
            buf.append(s)
            if len(buf) == batch_size:
                yield np.stack(buf)
                buf = []
        if buf:
            yield np.stack(buf)


def _fit(arr: np.ndarray, shape: tuple[int, ...], where: str) -> tuple[np.ndarray, bool]:
    """Return (array, is_stack) after checking ``arr`` against ``shape``; raise a clear error otherwise."""
    if tuple(arr.shape) == shape:
        return arr, False
    if tuple(arr.shape) == shape[1:] and shape[:1] == (1,):
        return arr, False
    if arr.ndim >= 1 and (tuple(arr.shape[1:]) == shape or (tuple(arr.shape[1:]) == shape[1:] and shape[:1] == (1,))):
        return arr, True
    raise CalibrationDataError(
        f"{where}: calibration data has shape {tuple(arr.shape)}, but the model input expects {shape} "
        f"per sample (or {shape[1:]} without the batch dimension, or a stack of either along a new first axis)")


def _as_sample(arr: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    return np.asarray(arr, dtype=np.float32).reshape(shape)


_cast_noted: set[str] = set()


def as_index_sample(arr: np.ndarray, shape: tuple[int, ...], input_name: str, limit: Optional[int],
                    where: str = "calibration data") -> np.ndarray:
    """One sample for an integer model input (token ids, bytes, indices) as int32 of ``shape``.

    Integer arrays are taken as they are; a float array holding whole numbers is cast (said once in the
    log). Refused in one line naming the input and the first bad value: a fraction, a NaN/Inf, a
    negative index, or an index ``>= limit`` (the size of the table it indexes, when known).
    """
    a = np.asarray(arr)
    if a.dtype.kind == "b":
        a = a.astype(np.int64)
    if a.dtype.kind == "f":
        bad = ~np.isfinite(a) | (np.round(a) != a)
        if np.any(bad):
            v = float(a.reshape(-1)[int(np.argmax(bad.reshape(-1)))])
            raise CalibrationDataError(f"{where}: input '{input_name}' takes integer indices, but the data holds "
                                       f"{v:g}; give whole numbers (an integer .npy/.npz array)")
        if input_name not in _cast_noted:
            _cast_noted.add(input_name)
            import logging

            logging.getLogger("converters.calibrate").warning(
                "input '%s' takes integer indices: its %s calibration values are whole numbers, cast to int32",
                input_name, a.dtype)
    elif a.dtype.kind not in "iu":
        raise CalibrationDataError(f"{where}: input '{input_name}' takes integer indices, but the data is "
                                   f"{a.dtype}; give an integer array")
    if a.size:
        lo, hi = a.min(), a.max()
        if lo < 0:
            raise CalibrationDataError(f"{where}: input '{input_name}' holds the negative index {int(lo)}; indices "
                                       f"must be 0 or more")
        if limit is not None and hi >= limit:
            raise CalibrationDataError(f"{where}: input '{input_name}' holds the index {int(hi)}, but the table it "
                                       f"indexes has {limit} rows (valid indices 0..{limit - 1})")
        if hi > np.iinfo(np.int32).max:
            raise CalibrationDataError(f"{where}: input '{input_name}' holds the index {int(hi)}, beyond int32")
    return a.astype(np.int32).reshape(shape)


def open_calibration(source: Source, input_shape: Sequence[int], input_name: str = "",
                     limit: Optional[int] = None, bin_scale: Optional[float] = None,
                     bin_zero_point: int = 0, preprocessor: Optional[Callable[[str], np.ndarray]] = None,
                     index_limit: "Optional[int] | bool" = None) -> CalibrationSet:
    """Open ``source`` as a :class:`CalibrationSet` for a model input of ``input_shape`` (source layout).

    ``limit`` keeps the first ``limit`` samples. Raises :class:`CalibrationDataError` when the
    source is missing, empty or of the wrong shape. ``index_limit`` marks an integer input (token ids,
    bytes, indices): samples are then int32, checked by :func:`as_index_sample` against ``0 .. index_limit - 1``
    (``True``: an integer input whose table size is unknown).
    """
    where = "calibration data" if isinstance(source, (np.ndarray, list, tuple)) else os.fspath(source)
    if index_limit is None or index_limit is False:
        cast: Callable[[np.ndarray, tuple[int, ...]], np.ndarray] = _as_sample
    else:
        bound = None if index_limit is True else int(index_limit)
        cast = lambda a, shp: as_index_sample(a, shp, input_name, bound, where)  # noqa: E731
    shape = tuple(int(d) for d in input_shape)
    items: list = []
    if isinstance(source, np.ndarray) or (isinstance(source, (list, tuple)) and source and
                                          all(isinstance(a, np.ndarray) for a in source)):
        arrays = [source] if isinstance(source, np.ndarray) else list(source)
        for a in arrays:
            a, stack = _fit(a, shape, "calibration array")
            items.extend([a[i] for i in range(len(a))] if stack else [a])
        desc = f"{len(items)} in-memory samples"
        load = lambda it: cast(it, shape)  # noqa: E731
    elif isinstance(source, (list, tuple)):
        raise CalibrationDataError("the calibration set is empty (an empty list was given)")
    else:
        p = Path(os.fspath(source))
        if not p.exists():
            raise CalibrationDataError(f"{p}: calibration data not found")
        files = sorted(q for q in p.iterdir() if q.is_file()) if p.is_dir() else [p]
        for f in files:
            items.extend(_items_of(f, shape, input_name, bin_scale, preprocessor))
        desc = f"{p} ({len(items)} samples)"

        def load(it: tuple) -> np.ndarray:
            kind, ref = it[0], it[1]
            if kind == "array":
                return cast(ref[it[2]] if it[2] is not None else ref, shape)
            q = np.fromfile(ref, dtype=np.int8).astype(np.float32)
            return cast((q - bin_zero_point) * np.float32(bin_scale), shape)
    if limit is not None:
        items = items[:limit]
    if not items:
        raise CalibrationDataError(f"the calibration set is empty: {source if not isinstance(source, np.ndarray) else 'array'} "
                                   "holds no samples (.npy, .npz, .bin or, with a preprocessor, .wav/image files)")
    return CalibrationSet(items, shape, desc, load)


#: One model input for :func:`open_calibration_inputs`: its name, its shape in the source layout, and its
#: ``index_limit`` (as :func:`open_calibration` takes it: None for a float input).
InputSpec = tuple[str, Sequence[int], "Optional[int] | bool"]


def _caster(name: str, index_limit: "Optional[int] | bool", where: str,
            ) -> Callable[[np.ndarray, tuple[int, ...]], np.ndarray]:
    """How one input's sample becomes its array: float32, or int32 indices checked by :func:`as_index_sample`."""
    if index_limit is None or index_limit is False:
        return _as_sample
    bound = None if index_limit is True else int(index_limit)
    return lambda a, shp: as_index_sample(a, shp, name, bound, where)


def split_inputs(arrays: "dict[str, np.ndarray]", inputs: Sequence[InputSpec], where: str) -> list[tuple]:
    """Check ``{input name: array}`` against ``inputs`` and split it into samples: one tuple per sample of
    ``(arrays, stacked, i)`` (sample ``i`` of each input, or the whole array where that input is not stacked).

    Each array holds one sample (the input's shape, with or without its leading batch 1) or a stack of them
    along a new first axis; every input must hold the same number. A missing or unexpected name, a wrong
    shape or unequal sample counts raise :class:`CalibrationDataError` in one line naming the input.
    """
    names = [n for n, _, _ in inputs]
    missing = [n for n in names if n not in arrays]
    extra = [k for k in arrays if k not in names]
    if missing or extra:
        what = "; ".join(([f"no array for input(s) {missing}"] if missing else [])
                         + ([f"unexpected array(s) {extra}"] if extra else []))
        raise CalibrationDataError(f"{where}: {what}; the model's inputs are {names} (one array per input name)")
    fitted, counts = [], {}
    for n, shape, _ in inputs:
        shp = tuple(int(d) for d in shape)
        arr, stack = _fit(np.asarray(arrays[n]), shp, f"{where}: input '{n}'")
        fitted.append((arr, stack))
        counts[n] = arr.shape[0] if stack else 1
    if len(set(counts.values())) > 1:
        listed = ", ".join(f"'{n}' {c}" for n, c in counts.items())
        raise CalibrationDataError(f"{where}: the inputs hold different numbers of samples ({listed}); give every "
                                   "input the same number of samples")
    arrs, stacks = tuple(a for a, _ in fitted), tuple(st for _, st in fitted)
    return [(arrs, stacks, i) for i in range(counts[names[0]])]


def open_calibration_inputs(source: "Source | dict[str, np.ndarray]", inputs: Sequence[InputSpec],
                            limit: Optional[int] = None, what: str = "calibration data") -> CalibrationSet:
    """Open ``source`` as a :class:`CalibrationSet` for a model with the given ``inputs`` (its graph's order).

    ``source``: a dict ``{input name: array}``, one ``.npz`` holding one array per input name, or a directory
    of such ``.npz`` files; each array is one sample or a stack of samples (see :func:`split_inputs`). A
    sample is a tuple of arrays ordered as ``inputs`` (the bare array for a one-input model), float32 or,
    for an integer input (``index_limit`` set), int32. ``limit`` keeps the first ``limit`` samples. ``what``
    names the data in messages (e.g. ``held-out data``).
    """
    names = [n for n, _, _ in inputs]
    if isinstance(source, dict):
        where = what
        items = split_inputs(source, inputs, where)
        desc = f"{len(items)} in-memory samples"
    else:
        p = Path(os.fspath(source)) if isinstance(source, (str, os.PathLike)) else None
        if p is None:
            raise CalibrationDataError(f"a model with {len(names)} inputs {names} takes {what} as a dict "
                                       "{input name: array}, a .npz holding one array per input, or a folder of "
                                       "such .npz files")
        where = os.fspath(p)
        if not p.exists():
            raise CalibrationDataError(f"{p}: {what} not found")
        files = sorted(q for q in p.iterdir() if q.is_file() and q.suffix.lower() == ".npz") if p.is_dir() else [p]
        if not p.is_dir() and p.suffix.lower() != ".npz":
            raise CalibrationDataError(f"{p}: a model with {len(names)} inputs {names} takes {what} as a "
                                       ".npz holding one array per input name (or a folder of such .npz files)")
        items = []
        for f in files:
            try:
                z = np.load(f, allow_pickle=False)
                arrays = {k: z[k] for k in z.keys() if k != "y" or "y" in names}  # 'y': labels, ignored
            except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
                raise CalibrationDataError(f"{f}: not a readable .npz file: {exc}") from None
            items.extend(split_inputs(arrays, inputs, str(f)))
        desc = f"{p} ({len(items)} samples)"
    casts = [_caster(n, lim, where) for n, _, lim in inputs]
    shapes = [tuple(int(d) for d in shape) for _, shape, _ in inputs]

    def load(item: tuple) -> "np.ndarray | tuple[np.ndarray, ...]":
        arrs, stacks, i = item
        sample = tuple(cast(a[i] if st else a, shp) for cast, a, st, shp in zip(casts, arrs, stacks, shapes))
        return sample[0] if len(sample) == 1 else sample

    if limit is not None:
        items = items[:limit]
    if not items:
        raise CalibrationDataError(f"{what} is empty: {where} holds no samples (.npz files with one "
                                   f"array per input {names})")
    return CalibrationSet(items, shapes[0] if len(shapes) == 1 else tuple(shapes), desc, load)


def preprocessor_from_config(config: "str | os.PathLike[str]", input_name: str,
                             input_shape: Sequence[int]) -> Callable[[str], np.ndarray]:
    """A calibration preprocessor (path -> float features) from an :mod:`edge_runtime.preprocess` config.

    ``config`` is a preset name (``kws``, ``sww``) or a YAML file. Audio configs read a .wav and
    return every model-input window it yields, stacked; image configs return one image. Features
    are float32 (not quantized): calibration needs real values.
    """
    from edge_runtime.model import TensorSpec
    from edge_runtime.preprocess import build_preprocessor, load_config

    cfg = load_config(config)
    spec = TensorSpec(input_name, tuple(int(d) for d in input_shape), np.dtype(np.float32))
    pre = build_preprocessor(cfg, spec)
    if cfg.kind in ("audio", "sensor"):
        from edge_runtime.preprocess.base import iter_windows
        from edge_runtime.preprocess.wav import read_wav

        def audio(path: str) -> np.ndarray:
            signal, _rate = read_wav(path)
            pre.reset()
            wins = [w.copy() for _, w in iter_windows(pre, signal)]
            return np.stack(wins) if wins else np.zeros((0,) + spec.shape, np.float32)
        return audio
    if cfg.kind == "image":
        return lambda path: np.asarray(pre(path), dtype=np.float32)
    raise CalibrationDataError(f"preprocessing config '{config}' is of kind {cfg.kind!r}; calibration from files "
                               "supports audio and image configs")


def _items_of(f: Path, shape: tuple[int, ...], input_name: str, bin_scale: Optional[float],
              preprocessor: Optional[Callable[[str], np.ndarray]]) -> list:
    suffix = f.suffix.lower()
    if suffix == ".npy":
        try:
            arr = np.load(f, mmap_mode="r", allow_pickle=False)
        except ValueError as exc:
            raise CalibrationDataError(f"{f}: not a readable .npy file: {exc}") from None
        arr, stack = _fit(arr, shape, str(f))
        return [("array", arr, i) for i in range(arr.shape[0])] if stack else [("array", arr, None)]
    if suffix == ".npz":
        try:
            z = np.load(f, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise CalibrationDataError(f"{f}: not a readable .npz file: {exc}") from None
        keys = list(z.keys())
        key = input_name if input_name in keys else "x" if "x" in keys else keys[0] if len(keys) == 1 else None
        if key is None:
            raise CalibrationDataError(f"{f}: holds arrays {keys}; name one after the model input "
                                       f"'{input_name}' or 'x'")
        arr, stack = _fit(z[key], shape, f"{f}[{key}]")
        return [("array", arr, i) for i in range(arr.shape[0])] if stack else [("array", arr, None)]
    if suffix == ".bin":
        if bin_scale is None:
            raise CalibrationDataError(f"{f}: int8 .bin calibration files need their scale and zero point "
                                       "(--bin-scale and --bin-zero-point)")
        n = int(np.prod(shape))
        if f.stat().st_size != n:
            raise CalibrationDataError(f"{f}: {f.stat().st_size} bytes, but one int8 sample of shape {shape} "
                                       f"needs {n}")
        return [("bin", f, None)]
    if suffix in MEDIA:
        if preprocessor is None:
            raise CalibrationDataError(f"{f}: {suffix} files need a preprocessor that turns them into model inputs "
                                       "(--preprocess PRESET|YAML, e.g. 'kws'); none was configured")
        arr = np.asarray(preprocessor(str(f)), dtype=np.float32)  # features are small: computed once, here
        if arr.size == 0:
            return []
        arr, stack = _fit(arr, shape, str(f))
        return [("array", arr, i) for i in range(arr.shape[0])] if stack else [("array", arr, None)]
    return []  # other files (labels, READMEs) are ignored


def load_labelled(path: "str | os.PathLike[str]", what: str, error: type[Exception], mmap: bool = False
                  ) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """Samples ``x`` and optional labels ``y`` from a ``.npz`` (arrays ``x`` and ``y``) or a ``.npy``
    (samples only; memory-mapped with ``mmap``). ``what`` names the data in ``error``'s messages."""
    p = os.fspath(path)
    if not os.path.isfile(p):
        raise error(f"{p}: {what} data not found")
    if p.endswith(".npz"):
        z = np.load(p, allow_pickle=False)
        if "x" not in z:
            article = "an" if what[:1] in ("a", "e", "i", "o", "u") else "a"
            raise error(f"{p}: {article} {what} .npz needs an array 'x' (and optionally labels 'y')")
        return z["x"], (z["y"] if "y" in z else None)
    return np.load(p, mmap_mode="r" if mmap else None, allow_pickle=False), None


def synthetic_images(n: int, height: int, width: int, seed: int = 0, channels: int = 3) -> np.ndarray:
    """``n`` structured synthetic images, float32 NHWC in [0, 1], for image models without a data set.

    Each image mixes what real photos have and white noise lacks: a smooth low-frequency colour
    field (bilinear upsampling of a coarse random grid), one to four flat-coloured ellipses or
    rectangles with hard edges, an oriented sinusoidal texture, and mild sensor noise.
    Deterministic for a given ``seed``. Scale the result for models that expect 0..255.
    """
    rng = np.random.default_rng(seed)
    out = np.empty((n, height, width, channels), np.float32)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    for k in range(n):
        g = int(rng.integers(3, 8))
        coarse = rng.random((g + 1, g + 1, channels)).astype(np.float32)
        ys, xs = np.linspace(0, g, height), np.linspace(0, g, width)
        y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
        y1, x1 = np.minimum(y0 + 1, g), np.minimum(x0 + 1, g)
        fy, fx = (ys - y0)[:, None, None], (xs - x0)[None, :, None]
        img = (coarse[y0][:, x0] * (1 - fy) * (1 - fx) + coarse[y1][:, x0] * fy * (1 - fx)
               + coarse[y0][:, x1] * (1 - fy) * fx + coarse[y1][:, x1] * fy * fx)
        for _ in range(int(rng.integers(1, 5))):
            cy, cx = rng.uniform(0, height), rng.uniform(0, width)
            ry, rx = rng.uniform(height / 10, height / 3), rng.uniform(width / 10, width / 3)
            if rng.random() < 0.5:
                mask = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1
            else:
                mask = (np.abs(yy - cy) < ry) & (np.abs(xx - cx) < rx)
            img[mask] = rng.random(channels)
        theta, freq = rng.uniform(0, np.pi), rng.uniform(0.05, 0.5)
        img += 0.15 * np.sin(freq * (np.cos(theta) * xx + np.sin(theta) * yy))[..., None]
        img += rng.normal(0, 0.03, img.shape)
        out[k] = np.clip(img, 0, 1)
    return out
