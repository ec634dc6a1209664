"""C sources of the generated-C kernels (package data: one op per .c file, shared headers)."""
