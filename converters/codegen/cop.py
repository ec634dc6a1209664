"""The C text of one op for the generator: :class:`COp` (constants, parameter block, call) and
the helpers that write checked C initializers (every integer checked against its C type)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from edge_runtime.errors import UnsupportedModelError
from edge_runtime.formats.tflite import Operator

#: integer C field types of the parameter blocks -> (min, max)
C_RANGES = {"int8_t": (-128, 127), "uint8_t": (0, 255), "int16_t": (-32768, 32767), "uint16_t": (0, 65535),
            "int32_t": (-(1 << 31), (1 << 31) - 1), "uint32_t": (0, (1 << 32) - 1),
            # the model-wide field types of er_config.h (converters/codegen/fields.py picks their width)
            "er_dim_t": (0, (1 << 31) - 1), "er_ring_t": (-(1 << 31), (1 << 31) - 1)}
#: the placeholder of a convolution's parameter block for its index in ``er_conv_shapes``
SHAPE_INDEX = "ER_SHAPE_INDEX"
#: what each kind of generated constant holds, by the suffix of its C name (``op<N>_<suffix>``)
CONST_KINDS = {"w": "weights", "b": "biases", "rq": "requantization", "p": "parameters", "bc": "parameters",
               "lut": "tables", "rows": "row index", "g": "parameters", "ix": "parameters"}


@dataclass
class COp:
    """The C of one op: its constant definitions (C name -> (kind, C text)), its parameter block
    (C type and initializer) and its call."""

    index: int
    name: str
    consts: dict[str, tuple[str, str]] = field(default_factory=dict)
    params: str = ""
    struct: str = ""
    call: Callable[[str, list[str], str], str] = lambda p, i, o: ""
    #: for ops with several outputs (or none): the call given every output (used instead of ``call``)
    call_all: "Callable[[str, list[str], list[str]], str] | None" = None
    #: static RAM buffers that keep their values across invokes (C name -> declaration)
    state: dict[str, str] = field(default_factory=dict)
    #: the layer's int8 weights as the generator stored them: (C name of the array, values as
    #: (rows, row length), whether the kernel reads an er_wsplit, how many times an inference
    #: reads each weight), for entropy coding (wplace.py)
    weights: "tuple[str, np.ndarray, bool, int] | None" = None
    #: CONV_2D / DEPTHWISE_CONV_2D: the initializer of its geometry (``er_conv_shape``); the generator
    #: writes each distinct one once, in ``er_conv_shapes``, and puts its index for :data:`SHAPE_INDEX`
    shape: str = ""
    #: the largest value of its ``er_dim_t`` fields and the largest magnitude of its ``er_ring_t``
    #: fields (recorded by :func:`c_struct`; the model's widest decides er_config.h)
    dim_max: int = 0
    ring_max: int = 0
    #: the values of the arrays added with :meth:`array` (C name -> (C type, values))
    arrays: dict[str, tuple[str, np.ndarray]] = field(default_factory=dict)
    #: of such a byte array: how many of its last bytes only a kernel's wide read of its last field
    #: touches (another array may supply them: cblob.py)
    tails: dict[str, int] = field(default_factory=dict)

    def array(self, suffix: str, ctype: str, values: np.ndarray) -> str:
        """Add ``static const ctype op<N>_<suffix>[]`` holding ``values``; return its C name."""
        name = f"op{self.index}_{suffix}"
        self.consts[name] = (CONST_KINDS[suffix], c_array(name, ctype, values, self))
        self.arrays[name] = (ctype, np.asarray(values).reshape(-1))
        return name


def c_values(ctype: str, values: np.ndarray, owner: "COp | Operator | str") -> str:
    """``values`` as a C initializer list body, refused with one line when they overflow ``ctype``
    (``owner``: the op, or a description, named in that line)."""
    v = np.asarray(values, np.int64).reshape(-1)
    lo, hi = C_RANGES[ctype]
    if v.size and (v.min() < lo or v.max() > hi):
        where = owner if isinstance(owner, str) else f"op {owner.name} (op {owner.index})"
        raise UnsupportedModelError(f"{where}: a constant overflows the C generator's "
                                    f"{ctype} ({int(v.min())}..{int(v.max())})")
    items = [str(int(x)) for x in v] or ["0"]
    return ",\n    ".join(", ".join(items[i:i + 24]) for i in range(0, len(items), 24))


def c_array(name: str, ctype: str, values: np.ndarray, owner: "COp | Operator | str") -> str:
    """A ``static const`` C array holding ``values`` (kept in flash); byte arrays are marked
    ``ER_BYTES`` (er_kernels.h), so that the compiler does not word-align them (no padding)."""
    n = max(1, int(np.asarray(values).size))
    align = " ER_BYTES" if ctype in ("int8_t", "uint8_t") else ""
    return f"static const {ctype} {name}[{n}]{align} = {{\n    {c_values(ctype, values, owner)}\n}};\n"


def c_struct(op: "COp | Operator", fields: list[tuple[str, "str | None", object]]) -> str:
    """A C designated initializer; each integer field is checked against its C type (``None``: a
    pointer or nested initializer, written as is)."""
    body = []
    for name, ctype, value in fields:
        if ctype is not None:
            lo, hi = C_RANGES[ctype]
            if not lo <= int(value) <= hi:
                raise UnsupportedModelError(f"op {op.name} (op {op.index}): {name} = {int(value)} does not fit "
                                            f"the C generator's {ctype} field")
            value = int(value)
            if isinstance(op, COp) and ctype == "er_dim_t":
                op.dim_max = max(op.dim_max, value)
            elif isinstance(op, COp) and ctype == "er_ring_t":
                op.ring_max = max(op.ring_max, abs(value))
        body.append(f".{name} = {value}")
    return "{ " + ", ".join(body) + " }"
