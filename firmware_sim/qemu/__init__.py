"""QEMU user-mode harness: Debian bookworm ARM roots (arm64, armhf) and runs inside them.

``python -m firmware_sim.qemu --help`` describes the command line. The parts:
:mod:`.recipe` (what a root holds), :mod:`.debroot` (apt download and unpack),
:mod:`.wheels` (pinned wheels), :mod:`.fixes` (post-unpack fixes), :mod:`.build`
(cache), :mod:`.runner` (qemu and pytest), :mod:`.selection` (emulated tests),
:mod:`.kws` (host vs. emulated outputs).
"""
