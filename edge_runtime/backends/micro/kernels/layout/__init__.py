"""Data-movement ops (split, slice, gather, pack, pad, broadcast, ...): op name -> kernel class."""
from __future__ import annotations

from edge_runtime.backends.micro.kernels.base import Kernel
from edge_runtime.backends.micro.kernels.layout.broadcast_args import BroadcastArgs
from edge_runtime.backends.micro.kernels.layout.broadcast_to import BroadcastTo
from edge_runtime.backends.micro.kernels.layout.cumsum import CumSum
from edge_runtime.backends.micro.kernels.layout.dynamic_update_slice import DynamicUpdateSlice
from edge_runtime.backends.micro.kernels.layout.embedding_lookup import EmbeddingLookup
from edge_runtime.backends.micro.kernels.layout.expand_dims import ExpandDims
from edge_runtime.backends.micro.kernels.layout.fill import Fill
from edge_runtime.backends.micro.kernels.layout.gather import Gather
from edge_runtime.backends.micro.kernels.layout.gather_nd import GatherNd
from edge_runtime.backends.micro.kernels.layout.mirror_pad import MirrorPad
from edge_runtime.backends.micro.kernels.layout.pack import Pack
from edge_runtime.backends.micro.kernels.layout.padv2 import PadV2
from edge_runtime.backends.micro.kernels.layout.range import Range
from edge_runtime.backends.micro.kernels.layout.reverse_v2 import ReverseV2
from edge_runtime.backends.micro.kernels.layout.shape import Shape
from edge_runtime.backends.micro.kernels.layout.slice import Slice
from edge_runtime.backends.micro.kernels.layout.split import Split
from edge_runtime.backends.micro.kernels.layout.split_v import SplitV
from edge_runtime.backends.micro.kernels.layout.topk_v2 import TopKV2
from edge_runtime.backends.micro.kernels.layout.unpack import Unpack

REGISTRY: dict[str, type[Kernel]] = {
    "SPLIT": Split,
    "SPLIT_V": SplitV,
    "SLICE": Slice,
    "GATHER": Gather,
    "GATHER_ND": GatherNd,
    "PACK": Pack,
    "UNPACK": Unpack,
    "EXPAND_DIMS": ExpandDims,
    "SHAPE": Shape,
    "FILL": Fill,
    "BROADCAST_TO": BroadcastTo,
    "BROADCAST_ARGS": BroadcastArgs,
    "REVERSE_V2": ReverseV2,
    "EMBEDDING_LOOKUP": EmbeddingLookup,
    "DYNAMIC_UPDATE_SLICE": DynamicUpdateSlice,
    "CUMSUM": CumSum,
    "MIRROR_PAD": MirrorPad,
    "PADV2": PadV2,
    "RANGE": Range,
    "TOPK_V2": TopKV2,
}
