"""Board support copied into generated C projects (package data: linker script, startup, I/O)."""
