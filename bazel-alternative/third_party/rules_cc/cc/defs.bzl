"""The C++ rules built into Bazel, under the names rules_cc exports.

Bazel 4.2.3 (Debian's bazel-bootstrap) loads @rules_cc//cc:defs.bzl from its
own tools and would download rules_cc to get it; the WORKSPACE maps
@rules_cc here so that the build works offline.
"""

cc_binary = native.cc_binary
cc_import = native.cc_import
cc_library = native.cc_library
cc_proto_library = native.cc_proto_library
cc_shared_library = getattr(native, "cc_shared_library", None)
cc_test = native.cc_test
cc_toolchain = native.cc_toolchain
cc_toolchain_suite = native.cc_toolchain_suite
fdo_prefetch_hints = native.fdo_prefetch_hints
fdo_profile = native.fdo_profile
objc_import = native.objc_import
objc_library = native.objc_library
