"""Unary elementwise ops (math, activations, casts, normalizations): op name -> kernel class."""
from __future__ import annotations

from edge_runtime.backends.micro.kernels.base import Kernel
from edge_runtime.backends.micro.kernels.unary.abs import Abs
from edge_runtime.backends.micro.kernels.unary.cast import Cast
from edge_runtime.backends.micro.kernels.unary.ceil import Ceil
from edge_runtime.backends.micro.kernels.unary.cos import Cos
from edge_runtime.backends.micro.kernels.unary.elu import Elu
from edge_runtime.backends.micro.kernels.unary.exp import Exp
from edge_runtime.backends.micro.kernels.unary.floor import Floor
from edge_runtime.backends.micro.kernels.unary.hard_swish import HardSwish
from edge_runtime.backends.micro.kernels.unary.l2_normalization import L2Normalization
from edge_runtime.backends.micro.kernels.unary.leaky_relu import LeakyRelu
from edge_runtime.backends.micro.kernels.unary.log import Log
from edge_runtime.backends.micro.kernels.unary.log_softmax import LogSoftmax
from edge_runtime.backends.micro.kernels.unary.logical_not import LogicalNot
from edge_runtime.backends.micro.kernels.unary.neg import Neg
from edge_runtime.backends.micro.kernels.unary.round import Round
from edge_runtime.backends.micro.kernels.unary.rsqrt import Rsqrt
from edge_runtime.backends.micro.kernels.unary.sin import Sin
from edge_runtime.backends.micro.kernels.unary.sqrt import Sqrt
from edge_runtime.backends.micro.kernels.unary.square import Square
from edge_runtime.backends.micro.kernels.unary.zeros_like import ZerosLike

REGISTRY: dict[str, type[Kernel]] = {
    "ABS": Abs,
    "NEG": Neg,
    "CEIL": Ceil,
    "FLOOR": Floor,
    "ROUND": Round,
    "SQRT": Sqrt,
    "RSQRT": Rsqrt,
    "EXP": Exp,
    "LOG": Log,
    "SIN": Sin,
    "COS": Cos,
    "SQUARE": Square,
    "LOGICAL_NOT": LogicalNot,
    "ELU": Elu,
    "HARD_SWISH": HardSwish,
    "LEAKY_RELU": LeakyRelu,
    "CAST": Cast,
    "ZEROS_LIKE": ZerosLike,
    "L2_NORMALIZATION": L2Normalization,
    "LOG_SOFTMAX": LogSoftmax,
}
