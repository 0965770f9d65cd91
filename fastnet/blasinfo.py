"""Which BLAS NumPy runs, which of its kernel families, and whether the environment forces older ones.

The matrix products are most of an epoch (docs/performance.md, "The floor"), so a run says which
library did them: OpenBLAS picks its kernels for the CPU at load time, unless OPENBLAS_CORETYPE
names a family. Set to Haswell on an AVX-512 CPU (some machines set it, for older OpenBLAS builds
that crashed there), it makes every product run AVX2 kernels, FORCED_COST times slower (1.3x on one
AVX-512 CPU measured, 1.8x on another). fastnet never changes the user's environment; it says so,
once, with what it costs.
"""

import os

# OpenBLAS kernel families that use AVX-512 (threadpoolctl's "architecture")
AVX512_FAMILIES = frozenset(("SkylakeX", "Cooperlake", "SapphireRapids"))
# products' time with Haswell kernels over SkylakeX ones, the least and the most measured (an Intel Xeon,
# an AMD EPYC): docs/performance.md#constants-and-where-they-come-from
FORCED_COST = (1.3, 1.8)


def blas_info():
    """{"library", "version", "kernels", "forced"} of the BLAS NumPy loaded (threadpoolctl), or None."""
    import numpy as np
    from threadpoolctl import threadpool_info

    np.ones(1)  # NumPy's BLAS loads with numpy
    for info in threadpool_info():
        if info.get("user_api") == "blas":
            return {"library": info.get("internal_api"), "version": info.get("version"),
                    "kernels": info.get("architecture"), "forced": os.environ.get("OPENBLAS_CORETYPE")}
    return None


def blas_text(info):
    """'openblas 0.3.31 (SkylakeX kernels)', for a run's header."""
    if not info:
        return "BLAS unknown"
    kernels = f" ({info['kernels']} kernels{', forced' if info['forced'] else ''})" if info["kernels"] else ""
    return f"{info['library']} {info['version']}{kernels}"


def _cpu_has_avx512():
    try:
        with open("/proc/cpuinfo") as f:
            return any(line.startswith("flags") and " avx512f" in line for line in f)
    except OSError:
        return False


def forced_warning(info, avx512=None):
    """A note when the environment forces kernels older than this CPU runs: else None."""
    if not info or not info["forced"] or info["library"] != "openblas" or info["kernels"] in AVX512_FAMILIES:
        return None
    if not (_cpu_has_avx512() if avx512 is None else avx512):
        return None
    return (f"note: OPENBLAS_CORETYPE={info['forced']} makes OpenBLAS run {info['kernels']} kernels on this AVX-512 "
            f"CPU: its matrix products take {FORCED_COST[0]}-{FORCED_COST[1]}x as long (docs/performance.md); "
            "unset it for the AVX-512 ones")
