"""Speed: the CPU training fast path, its convolutions and allocator setting, and multi-process training."""
