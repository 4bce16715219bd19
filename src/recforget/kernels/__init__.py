"""Pure numerical kernels over arrays: no classes, no I/O."""
