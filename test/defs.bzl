"""cluster_test: a gtest that launches clusters with the real binaries.

Sets TR_LAUNCH, TR_DAEMON and TR_RANK to the runfiles paths of
tokenrail-launch, tokenraild and the rank program (see harness.h).
"""

def cluster_test(name, srcs, size = "medium", tags = [], deps = [], data = [], **kwargs):
    native.cc_test(
        name = name,
        srcs = srcs,
        size = size,
        tags = tags,
        data = [
            ":cluster_rank",
            "//runtime/daemon:tokenraild",
            "//tools/launch:tokenrail-launch",
        ] + data,
        env = {
            "TR_DAEMON": "$(rootpath //runtime/daemon:tokenraild)",
            "TR_LAUNCH": "$(rootpath //tools/launch:tokenrail-launch)",
            "TR_RANK": "$(rootpath :cluster_rank)",
        },
        deps = [
            ":harness",
            "//third_party:gtest_main",
        ] + deps,
        **kwargs
    )
