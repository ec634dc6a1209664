"""``edge-runtime run``: run a model on inputs from a .npy/.npz file."""
from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

import numpy as np

from edge_runtime import log
from edge_runtime.errors import ConfigError, InputError

if TYPE_CHECKING:
    import argparse

NAME = "run"
HELP = "run a model on inputs from a .npy or .npz file"
#: Every module this command reaches logs through edge_runtime.log: ``logging`` is imported (and
#: configured) only when a message is emitted, which a plain run never does (start-up RSS).
LAZY_LOGGING = True
DESCRIPTION = """\
Run MODEL (.tflite or .onnx) on the array(s) in --input and print or save the outputs.

Inputs:
  X.npy  one array, for a single-input model.
  X.npz  one array per model input, keyed by input name (or arr_0, arr_1, ... in input order).
  If an array has one more leading dimension than the model input (e.g. (1000, 1, 49, 10, 1)
  for a (1, 49, 10, 1) input), each slice is run in turn, in one process, and the outputs
  are stacked along that leading dimension. Stateful models (streaming models with
  variables) carry their state from one slice to the next; --reset-each resets the model
  before every slice, so each slice runs as on a freshly loaded model.

Outputs: --output Y.npy (single-output models) or Y.npz (keyed by output name). Without
--output, a summary of each output is printed (shape, dtype, values or top-1 per slice).

Examples:
  edge-runtime run kws_ref_model.tflite --input x.npy
  edge-runtime run kws_ref_model.tflite --input x.npy --dequantize --json | jq '.outputs[0].values' 
  edge-runtime run model.tflite --input batch.npy --output y.npy --profile my_board.yaml
  edge-runtime run model_edgetpu.tflite --input x.npy --profile PROFILE --require-accelerator
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``edge-runtime run``."""
    p.add_argument("model", metavar="MODEL", help="model file (.tflite or .onnx)")
    p.add_argument("--input", "-i", required=True, metavar="X.npy|X.npz", help="input array(s)")
    p.add_argument("--output", "-o", metavar="Y.npy|Y.npz", help="save outputs here (.npy: single output, .npz: all)")
    p.add_argument("--backend", "-b", default="auto", choices=["auto", "litert", "tflite", "onnx", "micro"],
                   help="runtime to use (default: auto, from the file's format)")
    p.add_argument("--profile", "-p", metavar="NAME|FILE.yaml",
                   help="device profile: threads, accelerators and session settings come from it")
    p.add_argument("--threads", type=int, metavar="N", help="CPU threads (default: the profile's, else the runtime's)")
    p.add_argument("--accelerator", default="auto", metavar="auto|none|NAME|LIB.so",
                   help="accelerator to try: 'auto' (the profile's), 'none' (CPU only), a name from the profile, "
                        "or a TFLite delegate library path (default: auto)")
    p.add_argument("--require-accelerator", action="store_true",
                   help="fail instead of falling back to the CPU when the accelerator cannot be used")
    p.add_argument("--op-resolver", default="default", choices=["default", "reference", "no_default_delegates"],
                   help="TFLite kernels: default (optimised, XNNPACK), reference, or builtin without XNNPACK")
    p.add_argument("--quantize", action="store_true",
                   help="quantize float inputs with the model input's scale and zero point first")
    p.add_argument("--reset-each", action="store_true",
                   help="with stacked inputs, reset the model's state (variables) before every slice "
                        "instead of carrying it from one slice to the next")
    p.add_argument("--progress", action="store_true", help="show a progress bar even when stderr is not a terminal")
    p.add_argument("--dequantize", action="store_true",
                   help="turn quantized outputs into real values with each output's scale and zero point")
    p.add_argument("--json", action="store_true",
                   help='print {"model", "backend", "accelerator", "outputs": [{"name", "shape", "dtype", '
                        '"scale", "zero_point", "values"}]} (values nested like the array; dequantized with '
                        '--dequantize) instead of text')


def _bad_zip() -> type:
    """``zipfile.BadZipFile``; evaluated only while matching an error (numpy imports zipfile for .npz only)."""
    import zipfile

    return zipfile.BadZipFile


def read_inputs(path: str, specs: list[Any]) -> list[np.ndarray]:
    """Arrays from a .npy or .npz file, in the model's input order; clear errors otherwise."""
    if not os.path.exists(path):
        raise InputError(f"{path}: no such input file")
    if os.path.isdir(path):
        raise InputError(f"{path}: is a directory, not a .npy/.npz file")
    if not os.path.isfile(path):
        raise InputError(f"{path}: is not a regular file (a FIFO, socket or device); give a .npy/.npz file")
    try:
        data = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, _bad_zip()) as exc:
        raise InputError(f"{path}: not a readable .npy/.npz file: {exc}") from None
    if isinstance(data, np.ndarray):
        if len(specs) != 1:
            raise InputError(f"{path}: one array given, but the model has {len(specs)} inputs; use an .npz "
                             f"keyed by input name ({', '.join(s.name for s in specs)})")
        return [data]
    with data:
        keys = list(data.keys())
        names = [s.name for s in specs]
        positional = [f"arr_{i}" for i in range(len(specs))]
        if all(n in keys for n in names):
            chosen = names
        elif all(k in keys for k in positional):
            chosen = positional
        elif len(keys) == 1 and len(specs) == 1:
            chosen = keys
        else:
            raise InputError(f"{path}: arrays {keys} do not match the model's inputs {names}")
        out = []
        for k in chosen:
            try:
                out.append(data[k])
            except (ValueError, OSError, EOFError, _bad_zip()) as exc:
                why = "it holds Python objects (pickled), which are never loaded" if "pickle" in str(exc) else exc
                raise InputError(f"{path}: array '{k}' cannot be read: {why}") from None
        return out


def _progress(total: int, force: bool) -> Any:
    if total < 2:
        return None
    from edge_runtime.progress import progress_bar

    return progress_bar(total, show=True if force else None, unit="inf")


def run_batched(model: Any, arrays: list[np.ndarray], progress: bool = False,
                reset_each: bool = False) -> list[np.ndarray]:
    """Run once, or once per leading slice when every input has one extra leading dimension.

    ``reset_each``: call ``model.reset()`` before every slice (stateful models then run each
    slice from their initial state; otherwise the state carries over between slices).
    """
    specs = model.inputs
    extra = [a.ndim == len(s.shape) + 1 for a, s in zip(arrays, specs)]
    if not any(extra):
        return model.run(arrays)
    if not all(extra):
        raise InputError("either every input or none must have the extra leading (batch) dimension")
    n = arrays[0].shape[0]
    if any(a.shape[0] != n for a in arrays):
        raise InputError(f"inputs have different leading sizes: {[a.shape[0] for a in arrays]}")
    if n == 0:
        raise InputError("the input batch is empty")
    if reset_each:
        model.reset()
    first = model.run([a[0] for a in arrays])
    outs = [np.empty((n,) + o.shape, dtype=o.dtype) for o in first]
    for o, f in zip(outs, first):
        o[0] = f
    bar = _progress(n, progress)
    if bar is not None:
        bar.update(1)
    for i in range(1, n):
        if reset_each:
            model.reset()
        for o, r in zip(outs, model.run([a[i] for a in arrays])):
            o[i] = r
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return outs


def write_outputs(path: str, specs: list[Any], outs: list[np.ndarray]) -> None:
    """Save to .npy (single output) or .npz (keyed by output name)."""
    if path.endswith(".npz"):
        np.savez(path, **{s.name or f"output_{i}": o for i, (s, o) in enumerate(zip(specs, outs))})
    elif path.endswith(".npy"):
        if len(outs) != 1:
            raise ConfigError(f"{path}: the model has {len(outs)} outputs; save them to an .npz file")
        np.save(path, outs[0])
    else:
        raise ConfigError(f"{path}: the output file must end in .npy or .npz")


def _summary(name: str, arr: np.ndarray, batched: bool) -> str:
    head = f"output '{name}': shape {tuple(arr.shape)} {arr.dtype}"
    if batched and arr.ndim >= 2:
        top1 = arr.reshape(arr.shape[0], -1).argmax(axis=1)
        shown = np.array2string(top1[:20], separator=" ")
        return f"{head}; top-1 per slice: {shown}{' ...' if top1.size > 20 else ''}"
    flat = arr.reshape(-1)
    vals = np.array2string(flat[:16], separator=" ", precision=5)
    return f"{head}; values: {vals}{' ...' if flat.size > 16 else ''}; argmax {int(flat.argmax())}"


_FINAL_COLLECTION_SKIPPED = []


def _skip_final_collection() -> None:
    """At interpreter exit, skip the last cyclic garbage collection (``gc.freeze`` from an atexit hook).

    That collection walks every object numpy and LiteRT created, about 10 ms of a ~100 ms ``run``
    (``benchmarks.startup``), to free memory the process is about to give back anyway; ``run``
    closes its files and model itself, and the standard streams are still flushed. The hook runs
    only when the process exits, so calling :func:`run` in-process changes nothing before then.
    """
    if not _FINAL_COLLECTION_SKIPPED:
        import atexit
        import gc

        atexit.register(gc.freeze)
        _FINAL_COLLECTION_SKIPPED.append(True)


def run(args: argparse.Namespace) -> int:
    """Load, run, print or save."""
    import edge_runtime

    _skip_final_collection()

    options: dict[str, Any] = {"accelerator": args.accelerator, "require_accelerator": args.require_accelerator}
    if args.threads is not None:
        options["threads"] = args.threads
    if args.op_resolver != "default":
        options["op_resolver"] = args.op_resolver
    model = edge_runtime.load(args.model, backend=args.backend, profile=args.profile, **options)
    log.configure_if_imported()  # a library imported logging while loading: its records get our format too
    arrays = read_inputs(args.input, model.inputs)
    if args.quantize:
        arrays = [s.quantize(a) if s.quantized and a.dtype.kind == "f" else a for s, a in zip(model.inputs, arrays)]
    batched = any(a.ndim == len(s.shape) + 1 for a, s in zip(arrays, model.inputs))
    outs = run_batched(model, arrays, progress=args.progress, reset_each=getattr(args, "reset_each", False))
    if getattr(args, "dequantize", False):
        outs = [s.dequantize(o) if s.quantized else o for s, o in zip(model.outputs, outs)]
    acc = model.info.get("accelerator") or "CPU"
    if getattr(args, "json", False):
        import json

        if args.output:
            write_outputs(args.output, model.outputs, outs)
        doc = {"model": args.model, "backend": model.backend, "accelerator": acc, "output_file": args.output,
               "outputs": [{"name": s.name, "shape": list(o.shape), "dtype": str(o.dtype), "scale": s.scale,
                            "zero_point": s.zero_point, **({} if args.output else {"values": o.tolist()})}
                           for s, o in zip(model.outputs, outs)]}
        print(json.dumps(doc))
        model.close()
        return 0
    if args.output:
        write_outputs(args.output, model.outputs, outs)
        print(f"wrote {len(outs)} output(s) to {args.output}")
    else:
        for spec, o in zip(model.outputs, outs):
            print(_summary(spec.name, o, batched))
    lib = " ".join(str(model.info[k]) for k in ("library", "library_version") if model.info.get(k))
    print(f"backend {model.backend}{f' ({lib})' if lib else ''}, on {acc}", file=sys.stderr)
    model.close()
    return 0
