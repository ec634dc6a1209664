"""Model compression beyond int8: pruning (unstructured and structured), sparse weight storage,
the search for the least pruning that fits a device profile, and knowledge distillation.

Modules: :mod:`.prune` (float-graph pruning), :mod:`.quality` (accuracy, agreement or anomaly
score of a model on data), :mod:`.convert` (pruned graph -> int8 files), :mod:`.sparse` (TFLite
``SparsityParameters`` storage), :mod:`.search` (``--fit-profile``), :mod:`.distill` (PyTorch,
imported only by ``edge-convert distill``).
"""
