"""Performance benchmarks (pytest-benchmark); see benchmarks/README.md for how to run them."""
