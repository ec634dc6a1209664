"""Spatial and reduction ops (resize, transpose conv, space/depth, batch matmul, reductions): op name -> kernel class."""
from __future__ import annotations

from edge_runtime.backends.micro.kernels.base import Kernel
from edge_runtime.backends.micro.kernels.spatial.arg_max import ArgMax
from edge_runtime.backends.micro.kernels.spatial.arg_min import ArgMin
from edge_runtime.backends.micro.kernels.spatial.batch_matmul import BatchMatMul
from edge_runtime.backends.micro.kernels.spatial.batch_to_space_nd import BatchToSpaceND
from edge_runtime.backends.micro.kernels.spatial.depth_to_space import DepthToSpace
from edge_runtime.backends.micro.kernels.spatial.l2_pool_2d import L2Pool2D
from edge_runtime.backends.micro.kernels.spatial.reduce_all import ReduceAll
from edge_runtime.backends.micro.kernels.spatial.reduce_max import ReduceMax
from edge_runtime.backends.micro.kernels.spatial.reduce_min import ReduceMin
from edge_runtime.backends.micro.kernels.spatial.reduce_prod import ReduceProd
from edge_runtime.backends.micro.kernels.spatial.resize_bilinear import ResizeBilinear
from edge_runtime.backends.micro.kernels.spatial.resize_nearest_neighbor import ResizeNearestNeighbor
from edge_runtime.backends.micro.kernels.spatial.space_to_batch_nd import SpaceToBatchND
from edge_runtime.backends.micro.kernels.spatial.space_to_depth import SpaceToDepth
from edge_runtime.backends.micro.kernels.spatial.sum import Sum
from edge_runtime.backends.micro.kernels.spatial.transpose_conv_float import TransposeConvAny

REGISTRY: dict[str, type[Kernel]] = {
    "TRANSPOSE_CONV": TransposeConvAny,  # float32: transpose_conv_float.py, else transpose_conv.py
    "BATCH_MATMUL": BatchMatMul,
    "RESIZE_BILINEAR": ResizeBilinear,
    "RESIZE_NEAREST_NEIGHBOR": ResizeNearestNeighbor,
    "DEPTH_TO_SPACE": DepthToSpace,
    "SPACE_TO_DEPTH": SpaceToDepth,
    "BATCH_TO_SPACE_ND": BatchToSpaceND,
    "SPACE_TO_BATCH_ND": SpaceToBatchND,
    "L2_POOL_2D": L2Pool2D,
    "SUM": Sum,
    "REDUCE_MAX": ReduceMax,
    "REDUCE_MIN": ReduceMin,
    "REDUCE_ALL": ReduceAll,
    "REDUCE_PROD": ReduceProd,
    "ARG_MAX": ArgMax,
    "ARG_MIN": ArgMin,
}
