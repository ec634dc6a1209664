"""``edge-runtime features``: run a preprocessing preset or chain over a WAV file."""
from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from edge_runtime.errors import ConfigError, InputError

NAME = "features"
HELP = "compute quantized model-input windows from a WAV file with a preset or YAML chain"
DESCRIPTION = """\
Stream FILE.wav through a preprocessing preset (kws, sww) or a YAML chain and write the
feature sequence: one row per model input window, each row shaped, typed and quantized exactly
as the model's input tensor expects (e.g. int8 (N, 1, 30, 1, 40) for sww).

Windows are produced as a device would produce them: the audio is pushed in --chunk sample
pieces through fixed ring buffers; the result does not depend on the chunk size.

Presets follow the MLPerf Tiny reference front-ends (see ../shared/models/features/FEATURES.md):
  kws  MFCC, 1 s peak-normalised clips, 49x10, int8 scale 0.5847 zp 83, truncating quantization
  sww  log-mel, 40 bands every 32 ms, 30-frame windows every frame, int8 scale 0.0037 zp -128

Examples:
  edge-runtime features sww --wav short_wav_easy10s.wav --output sww.npy
  edge-runtime features my_chain.yaml --wav clip.wav --model model.tflite --output x.npy
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``edge-runtime features``."""
    p.add_argument("chain", metavar="PRESET_OR_CHAIN.yaml", help="a preset name (kws, sww) or a preprocessing YAML file")
    p.add_argument("--wav", required=True, metavar="FILE", help="PCM WAV file (channel 0 is used)")
    p.add_argument("--output", "-o", metavar="F.npy",
                   help="write the windows here as one array (N, *input_shape); without it a summary is printed")
    p.add_argument("--model", "-m", metavar="MODEL",
                   help="take the input shape, dtype, scale and zero point from this model's first input")
    p.add_argument("--backend", "-b", default="auto", choices=["auto", "litert", "tflite", "onnx", "micro"],
                   help="backend used to open --model (default: auto, from the file's format)")
    p.add_argument("--chunk", type=int, default=512, metavar="N",
                   help="samples pushed per step, as a device would deliver them (default: 512)")
    p.add_argument("--no-flush", action="store_true",
                   help="do not zero-pad a partial final window (only matters for chains that pad, like kws)")
    p.add_argument("--progress", action="store_true", help="show a progress bar even when stderr is not a terminal")
    p.add_argument("--json", action="store_true",
                   help='print {"chain", "windows", "dtype", "shape", "seconds", "output", "window_ends_s": [...], '
                        '"features": [...] (without --output)} instead of text')


def progress_bar(total: int, force: bool, unit: str = "sample") -> Any:
    """A tqdm bar on stderr when it is a terminal or when forced; else None."""
    from edge_runtime.progress import progress_bar as bar

    return bar(total, show=True if force else None, unit=unit, unit_scale=True)


def run(args: argparse.Namespace) -> int:
    """Compute and save or summarise the windows."""
    from edge_runtime.preprocess import build_preprocessor, load_config
    from edge_runtime.preprocess.wav import read_wav

    cfg = load_config(args.chain)
    if cfg.kind != "audio" or cfg.audio is None:
        raise ConfigError(f"{args.chain}: is a {cfg.kind} chain; `features --wav` needs an audio chain")
    spec = None
    if args.model:
        import edge_runtime

        with edge_runtime.load(args.model, backend=args.backend) as model:
            spec = model.inputs[0]
    stream = build_preprocessor(cfg, spec)
    signal, rate = read_wav(args.wav)
    if rate != cfg.audio.sample_rate:
        raise InputError(f"{args.wav}: sample rate {rate} Hz, but '{cfg.name}' expects {cfg.audio.sample_rate} Hz")
    if not 0 < args.chunk <= stream.max_chunk:
        raise ConfigError(f"--chunk must be between 1 and {stream.max_chunk} (the chain's max_chunk), got {args.chunk}")
    rows: list[np.ndarray] = []
    ends: list[int] = []
    bar = progress_bar(len(signal), args.progress)
    for start in range(0, len(signal), args.chunk):
        n = stream.push(signal[start:start + args.chunk])
        rows.extend(stream.windows[i].copy() for i in range(n))
        ends.extend(int(e) for e in stream.window_end[:n])
        if bar is not None:
            bar.update(min(args.chunk, len(signal) - start))
    if bar is not None:
        bar.close()
    if not args.no_flush:
        n = stream.flush()
        rows.extend(stream.windows[i].copy() for i in range(n))
        ends.extend(int(e) for e in stream.window_end[:n])
    out = np.stack(rows) if rows else np.zeros((0, *stream.input_shape), dtype=stream.windows.dtype)
    rate_f = float(cfg.audio.sample_rate)
    if getattr(args, "json", False):
        import json

        doc: dict[str, Any] = {"chain": cfg.name, "windows": int(out.shape[0]), "dtype": str(out.dtype),
                               "shape": list(stream.input_shape), "seconds": round(len(signal) / rate_f, 6),
                               "output": args.output, "window_ends_s": [round(e / rate_f, 6) for e in ends]}
        if args.output:
            try:
                np.save(args.output, out)
            except OSError as exc:
                raise InputError(f"{args.output}: cannot write: {exc}") from None
        else:
            doc["features"] = out.tolist()
        print(json.dumps(doc))
        return 0
    if args.output:
        try:
            np.save(args.output, out)
        except OSError as exc:
            raise InputError(f"{args.output}: cannot write: {exc}") from None
        print(f"{args.output}: {out.shape[0]} windows of {out.dtype}{list(stream.input_shape)} "
              f"({cfg.name}, {len(signal) / rate_f:.3f} s of audio)")
    else:
        print(f"{cfg.name}: {out.shape[0]} windows of {out.dtype}{list(stream.input_shape)} from "
              f"{len(signal) / rate_f:.3f} s of audio")
        for i in range(min(out.shape[0], 5)):
            flat = out[i].reshape(-1)
            print(f"  window {i}: ends {ends[i] / rate_f:.3f} s, min {flat.min()}, max {flat.max()}, "
                  f"mean {flat.astype(np.float64).mean():.2f}")
        if out.shape[0] > 5:
            print(f"  ... {out.shape[0] - 5} more; use --output F.npy to save them")
    return 0
