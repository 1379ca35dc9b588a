"""Stand-alone tools that import nothing of the project: avx2.py (any command as on an AVX2 CPU,
`python -m bench.avx2 COMMAND`, the name the benchmarks and BENCHMARKS.md use; `python -m tools.avx2`
is the same) and avx2_cpuid.c, the CPUID layer it builds."""
