"""Run generated C (``edge-convert export --format c``) on the host or an emulated Cortex-M under
qemu-system-arm; the board support (linker script, startup, semihosting runner) is in ``board/``."""
