#!/usr/bin/env bash
echo "abexp's offline Bazel build has no coverage tools (remote_coverage_tools is a stand-in); measure coverage with the CMake build" >&2
exit 1
