"""The Java rules built into Bazel, under the names rules_java exports.

abexp has no Java, but Bazel 4.2.3's own tools load
@rules_java//java:defs.bzl, and would download rules_java to get it; the
WORKSPACE maps @rules_java here so that the build works offline.
"""

java_binary = native.java_binary
java_import = native.java_import
java_library = native.java_library
java_lite_proto_library = native.java_lite_proto_library
java_package_configuration = native.java_package_configuration
java_plugin = native.java_plugin
java_proto_library = native.java_proto_library
java_runtime = native.java_runtime
java_test = native.java_test
java_toolchain = native.java_toolchain
