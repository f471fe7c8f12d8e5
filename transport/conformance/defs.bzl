"""transport_conformance_test: the conformance suite for one backend.

Builds a conformance_peer linked with just that backend (so each backend's
suite builds on its own) and a cc_test that spawns it. The test source holds
the TR_TRANSPORT_CONFORMANCE(...) registrations.
"""

def transport_conformance_test(name, srcs, backend, size = "medium", tags = [], **kwargs):
    peer = name + "_peer"
    native.cc_binary(
        name = peer,
        testonly = True,
        deps = [backend, "//transport/conformance:peer_main"],
    )
    native.cc_test(
        name = name,
        srcs = srcs,
        size = size,
        data = [":" + peer],
        env = {"TR_CONFORMANCE_PEER": "$(rootpath :{})".format(peer)},
        tags = tags,
        deps = [backend, "//transport/conformance"],
        **kwargs
    )
