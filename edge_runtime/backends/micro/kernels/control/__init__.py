"""Control flow and resource variables (CALL_ONCE, IF, WHILE, VAR_HANDLE, READ/ASSIGN_VARIABLE): op name -> kernel class."""
from __future__ import annotations

from edge_runtime.backends.micro.kernels.base import Kernel
from edge_runtime.backends.micro.kernels.control.assign_variable import AssignVariable
from edge_runtime.backends.micro.kernels.control.call_once import CallOnce
from edge_runtime.backends.micro.kernels.control.if_op import If
from edge_runtime.backends.micro.kernels.control.read_variable import ReadVariable
from edge_runtime.backends.micro.kernels.control.var_handle import VarHandle
from edge_runtime.backends.micro.kernels.control.while_op import While

REGISTRY: dict[str, type[Kernel]] = {
    "CALL_ONCE": CallOnce,
    "IF": If,
    "WHILE": While,
    "VAR_HANDLE": VarHandle,
    "READ_VARIABLE": ReadVariable,
    "ASSIGN_VARIABLE": AssignVariable,
}
