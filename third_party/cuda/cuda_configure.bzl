"""Repository rule that finds the CUDA toolkit (or finds none).

Creates @<name> with:
  defs.bzl   HAS_CUDA (bool) and NVCC (path or "")
  BUILD      cuda_headers, cudart, cublas, nccl; empty libraries without CUDA
Bazel refuses absolute -I paths outside the execution root, so the toolkit's
include/ is symlinked into the repository and exposed through `includes`.
"""

def _cuda_configure_impl(ctx):
    root = ctx.os.environ.get("CUDA_PATH", "/usr/local/cuda")
    nvcc = ctx.path(root + "/bin/nvcc")
    has_cuda = nvcc.exists and ctx.path(root + "/include/cuda_runtime.h").exists
    if has_cuda:
        ctx.symlink(root + "/include", "include")
        lib = root + "/lib64"
        link = ["-L" + lib, "-Wl,-rpath," + lib]
        ctx.file("BUILD", """
package(default_visibility = ["//visibility:public"])
cc_library(name = "cuda_headers", hdrs = glob(["include/**/*.h", "include/**/*.hpp", "include/**/*.inl"]), includes = ["include"])
cc_library(name = "cudart", deps = [":cuda_headers"], linkopts = {link} + ["-lcudart"])
cc_library(name = "cublas", deps = [":cudart"], linkopts = {link} + ["-lcublas", "-lcublasLt"])
cc_library(name = "nccl", deps = [":cudart"], linkopts = {link} + ["-lnccl"])
""".format(link = repr(link)))
    else:
        ctx.file("BUILD", """
package(default_visibility = ["//visibility:public"])
cc_library(name = "cuda_headers")
cc_library(name = "cudart")
cc_library(name = "cublas")
cc_library(name = "nccl")
""")
    ctx.file("defs.bzl", "HAS_CUDA = {}\nNVCC = {}\n".format(
        has_cuda,
        repr(str(nvcc) if has_cuda else ""),
    ))

cuda_configure = repository_rule(
    implementation = _cuda_configure_impl,
    environ = ["CUDA_PATH"],
    local = True,
)
