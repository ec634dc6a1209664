"""Recognise a model file by its content and check its structure before native code sees it.

LiteRT and ONNX Runtime are native code: a truncated or corrupt file can crash
them. :func:`inspect_model_file` looks at the bytes first (the TFLite ``TFL3``
identifier, the protobuf layout of an ONNX ``ModelProto``), refuses a file whose
content does not match its extension, and walks the whole structure with the
bounds-checked readers in :mod:`edge_runtime.formats`. Every problem is one
:class:`~edge_runtime.errors.ModelFormatError` naming the file and the defect.
"""
from __future__ import annotations

import mmap
import os
from dataclasses import dataclass
from typing import Optional, Union

from edge_runtime.errors import ModelFormatError
from edge_runtime.formats.tflite import TFLITE_IDENTIFIER, TFLiteModel
from edge_runtime.formats.tflite_check import check_tflite_model

TFLITE = "tflite"
ONNX = "onnx"
_EXTENSIONS = {".tflite": TFLITE, ".lite": TFLITE, ".onnx": ONNX}
_NAMES = {TFLITE: "TFLite", ONNX: "ONNX"}
_ARTICLE = {TFLITE: "a", ONNX: "an"}


@dataclass
class ModelFile:
    """A model file whose format is known and whose structure has been checked.

    ``tflite`` is the parsed model (a zero-copy view over a memory map) for TFLite
    files; ``onnx`` holds the summary from :mod:`edge_runtime.formats.onnx_check`.
    """

    path: str
    format: str
    size: int
    tflite: Optional[TFLiteModel] = None
    onnx: Optional[object] = None


def require_model_path(path: str) -> None:
    """Raise :class:`ModelFormatError` when ``path`` does not exist or is a directory."""
    if not os.path.exists(path):
        raise ModelFormatError(f"{path}: no such file")
    if os.path.isdir(path):
        raise ModelFormatError(f"{path}: is a directory, not a model file")


def read_head(path: str, n: int) -> bytes:
    """The first ``n`` bytes (fewer for a shorter file) of the model file ``path``
    (see :func:`require_model_path` for the errors)."""
    require_model_path(path)
    with open(path, "rb") as f:
        return f.read(n)


def _check_path(path: str) -> int:
    if not path:
        raise ModelFormatError("no model path given")
    require_model_path(path)
    if not os.path.isfile(path):
        raise ModelFormatError(f"{path}: is not a regular file")
    try:
        size = os.path.getsize(path)
    except OSError as exc:
        raise ModelFormatError(f"{path}: cannot read the file: {exc.strerror}") from None
    if size == 0:
        raise ModelFormatError(f"{path}: the file is empty")
    return size


def sniff_format(head: bytes) -> Optional[str]:
    """The format the first bytes of a file look like: ``"tflite"``, ``"onnx"`` or ``None``.

    TFLite files carry the FlatBuffers file identifier ``TFL3`` at bytes 4..8. An
    ONNX ModelProto is a protobuf message; writers put ``ir_version`` (field 1,
    varint, tag byte 0x08) first, and every valid ModelProto starts with a tag of
    one of its known fields, so the first byte is checked against those tags.
    """
    if len(head) >= 8 and head[4:8] == TFLITE_IDENTIFIER:
        return TFLITE
    if head and head[0] in _ONNX_FIRST_TAGS:
        return ONNX
    return None


# Tag bytes (field << 3 | wire type) of ModelProto's fields: ir_version (1, varint),
# producer_name (2), producer_version (3), domain (4), model_version (5, varint),
# doc_string (6), graph (7), opset_import (8), metadata_props (14).
_ONNX_FIRST_TAGS = frozenset({0x08, 0x12, 0x1A, 0x22, 0x28, 0x32, 0x3A, 0x42, 0x72})


def inspect_model_file(path: Union[str, "os.PathLike[str]"]) -> ModelFile:
    """Detect the format of ``path`` from its bytes and validate its structure.

    Raises :class:`ModelFormatError` for a missing file, a directory, an empty,
    truncated or corrupt file, or a file whose content disagrees with its
    extension (e.g. a .tflite renamed .onnx).
    """
    p = os.fspath(path)
    size = _check_path(p)
    try:  # mapped once: the format sniff, the structural check and the TFLite model all read this map
        with open(p, "rb") as f:
            try:
                mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            except (OSError, ValueError) as exc:
                raise ModelFormatError(f"{p}: cannot map the file: {exc}") from None
    except OSError as exc:
        raise ModelFormatError(f"{p}: cannot read the file: {exc.strerror}") from None
    head = mm[:64]
    detected = sniff_format(head)
    ext = os.path.splitext(p)[1].lower()
    claimed = _EXTENSIONS.get(ext)
    if detected is None or (claimed is not None and claimed != detected):
        mm.close()
    if detected is None:
        what = f"{_ARTICLE[claimed]} {_NAMES[claimed]} model" if claimed else "a .tflite or .onnx model"
        raise ModelFormatError(
            f"{p}: not {what}: the content matches neither TFLite (no 'TFL3' identifier at byte 4) "
            f"nor ONNX (first byte 0x{head[0]:02x} is not a ModelProto field tag)"
        )
    if claimed is not None and claimed != detected:
        raise ModelFormatError(
            f"{p}: the file name says {_NAMES[claimed]} ({ext}) but the content is {_ARTICLE[detected]} {_NAMES[detected]} model; "
            f"rename it to .{detected}"
        )
    if detected == TFLITE:
        model = TFLiteModel(mm, p)
        check_tflite_model(model)
        return ModelFile(p, TFLITE, size, tflite=model)
    from edge_runtime.formats.onnx_check import check_onnx_bytes

    try:
        summary = check_onnx_bytes(memoryview(mm), p)
    finally:
        try:
            mm.close()
        except BufferError:
            pass  # a view is still referenced by an error's traceback; the map closes when it is freed
    return ModelFile(p, ONNX, size, onnx=summary)


def detect_format(path: Union[str, "os.PathLike[str]"]) -> str:
    """Only the format (``"tflite"`` or ``"onnx"``) from content, after the basic path checks."""
    p = os.fspath(path)
    _check_path(p)
    with open(p, "rb") as f:
        head = f.read(64)
    fmt = sniff_format(head)
    if fmt is None:
        raise ModelFormatError(f"{p}: not a TFLite or ONNX model")
    return fmt
