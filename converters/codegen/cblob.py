"""The layers' bit-packed biases and ER_RQ_SCALE blobs, each kind in one byte array (``er_biases``,
``er_rqs``) that the parameter blocks point into. The kernels read a few bytes past a packed array's
last field (a 3-byte bias read, a 4-byte scale read); in one array those bytes are the next layer's,
so only the last layer keeps them (and identical arrays are stored once). Pointers and kernels are
unchanged: only flash bytes go."""
from __future__ import annotations

import re

import numpy as np

from converters.codegen.cop import CONST_KINDS, COp, c_array

#: the suffix of the per-layer arrays' C names -> the array holding them all
BLOBS = {"b": "er_biases", "rq": "er_rqs"}


def blob_constants(cops: list[COp]) -> dict[str, tuple[str, str]]:
    """Move the byte-array biases and requantization blobs of ``cops`` into one array per kind and
    point the parameter blocks into it; the new arrays (C name -> (kind, C text))."""
    out: dict[str, tuple[str, str]] = {}
    for suffix, blob in BLOBS.items():
        members = [(cop, f"op{cop.index}_{suffix}") for cop in cops]
        members = [(cop, name) for cop, name in members
                   if name in cop.consts and cop.arrays.get(name, ("",))[0] == "uint8_t"
                   and re.search(rf"\b{name}\b", cop.params) and not re.search(rf"\b{name}\b", cop.shape)]
        if len(members) < 2:
            continue
        data, where = bytearray(), {}
        for i, (cop, name) in enumerate(members):
            full = bytes(np.asarray(cop.arrays[name][1], np.uint8))
            body = full if i == len(members) - 1 else full[:len(full) - cop.tails.get(name, 0)]
            if full in where:
                continue
            where[full] = len(data)
            data += body
        for cop, name in members:
            off = where[bytes(np.asarray(cop.arrays[name][1], np.uint8))]
            cop.params = re.sub(rf"\b{name}\b", f"({blob} + {off})", cop.params)
            del cop.consts[name]
        kind = CONST_KINDS[suffix]
        out[blob] = (kind, c_array(blob, "uint8_t", np.frombuffer(bytes(data), np.uint8), f"the model's {kind}"))
    return out


__all__ = ["BLOBS", "blob_constants"]
