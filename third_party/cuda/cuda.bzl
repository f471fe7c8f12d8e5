"""cuda_library: .cu sources compiled by nvcc when CUDA is present.

With CUDA, each .cu becomes a position-independent object through a genrule
calling nvcc, and a cc_library links the objects against cudart. Without
CUDA, the cc_library is built from `fallback_srcs` instead (C++ that reports
Unavailable at run time), so every caller still builds and links.
"""

load("@local_cuda//:defs.bzl", "HAS_CUDA", "NVCC")

# H100/H200 (sm_90) and A100 (sm_80) machine code, plus PTX for newer GPUs.
NVCC_ARCH_FLAGS = [
    "-gencode=arch=compute_80,code=sm_80",
    "-gencode=arch=compute_90,code=[sm_90,compute_90]",
]

def cuda_library(name, srcs, hdrs = [], deps = [], fallback_srcs = [], extra_hdrs = [], copts = [], **kwargs):
    """extra_hdrs: headers of other packages the .cu files include (nvcc runs in
    a genrule, which sees only the files it is given)."""
    if not HAS_CUDA:
        native.cc_library(name = name, srcs = fallback_srcs, hdrs = hdrs, deps = deps, **kwargs)
        return
    objs = []
    for src in srcs:
        obj = "_{}_{}.pic.o".format(name, src.replace("/", "_").replace(".cu", ""))
        native.genrule(
            name = obj.replace(".", "_") + "_nvcc",
            srcs = [src] + extra_hdrs + native.glob(["**/*.h", "**/*.cuh"]),
            outs = [obj],
            cmd = " ".join([
                NVCC,
                "-std=c++17 -O3 --expt-relaxed-constexpr",
                " ".join(NVCC_ARCH_FLAGS),
                "-Xcompiler -fPIC -I. -I$(GENDIR)",
                " ".join(copts),
                "-c $(location {}) -o $@".format(src),
            ]),
        )
        objs.append(obj)
    native.cc_library(
        name = name,
        srcs = objs,
        hdrs = hdrs,
        deps = deps + ["@local_cuda//:cudart"],
        **kwargs
    )
