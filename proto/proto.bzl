"""tr_proto_library: C++ (and gRPC) code from .proto files with the system
protoc and grpc_cpp_plugin (Debian's protobuf-compiler-grpc), no downloads.

Sources are given relative to this package; imports are relative to the
workspace root ("proto/tokenrail/v1/common.proto").
"""

def tr_proto_library(name, srcs, deps = [], grpc = True, visibility = None):
    bases = [s[:-len(".proto")] for s in srcs]
    hdrs = [b + ".pb.h" for b in bases]
    ccs = [b + ".pb.cc" for b in bases]
    if grpc:
        hdrs += [b + ".grpc.pb.h" for b in bases]
        ccs += [b + ".grpc.pb.cc" for b in bases]
    dep_protos = [d + "_srcs" for d in deps]
    native.filegroup(name = name + "_srcs", srcs = srcs + dep_protos, visibility = visibility)
    grpc_flags = "--grpc_out=$(GENDIR) --plugin=protoc-gen-grpc=/usr/bin/grpc_cpp_plugin" if grpc else ""
    native.genrule(
        name = name + "_gen",
        srcs = srcs + dep_protos,
        outs = hdrs + ccs,
        cmd = "/usr/bin/protoc -I. --cpp_out=$(GENDIR) {grpc} {srcs}".format(
            grpc = grpc_flags,
            srcs = " ".join(["$(location {})".format(s) for s in srcs]),
        ),
    )
    native.cc_library(
        name = name,
        srcs = ccs,
        hdrs = hdrs,
        deps = deps + ["//third_party:protobuf"] + (["//third_party:grpc"] if grpc else []),
        copts = ["-Wno-unused-parameter"],
        visibility = visibility,
    )
