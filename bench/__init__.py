"""Benchmarks of fastnet: per-kernel (reference vs JIT), whole epochs against the matrix-product floor,
and an end-to-end comparison with PyTorch (`python -m bench.compare`)."""
