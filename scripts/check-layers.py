#!/usr/bin/env python3
"""Checks that abexp's layers only depend downwards (docs/architecture.md).

    service (server/service)  ->  core (server/core)  ->  stats (stats/)
    storage (server/storage)  ->  core
    service, storage          ->  metrics (server/metrics)  ->  core
    ofrep (server/ofrep)      ->  http (server/http), metrics, core
    process (server/*.cc)     ->  everything above

Every #include in the C++ sources under server/, client/, stats/ and bench/
is checked:
  - server/core includes no gRPC, protobuf, hiredis or libevent header and
    nothing from storage, service or the process;
  - server/storage includes no gRPC header, no public API proto
    (abexp/v1/), and nothing from service or the process;
  - server/service includes nothing from storage or the process;
  - server/http (routes' types, the HTTP token check) includes no gRPC,
    protobuf, hiredis, libevent or HTTP library header, and nothing above
    the core;
  - server/ofrep (the OpenFeature HTTP API) includes no gRPC, protobuf,
    hiredis, libevent or HTTP library header, and nothing from storage,
    service or the process;
  - server/metrics includes no gRPC, hiredis or libevent header and
    nothing from storage, service or the process (and the core nothing
    from it: the core counts nothing);
  - stats/ includes nothing from server/, client/, gRPC, protobuf or hiredis;
  - production code (anything but *_test.cc files, server/testing/,
    stats/testing/ and tests/) includes no testing header: nothing from
    server/testing/, stats/testing/ or tests/, and no GoogleTest.

Usage: scripts/check-layers.py [REPO_ROOT]   (default: this script's repo)
Exit status 0 when every rule holds, 1 naming each include that breaks one
(file:line, the include, the rule and what to do instead).
"""
import os
import re
import sys

FOLDERS = ("server", "client", "stats", "bench")
SOURCE = re.compile(r"\.(cc|h)$")
INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]')

# What a header path belongs to, first match wins.
GRPC = re.compile(r"^(grpc|grpcpp)/|\.grpc\.pb\.h$")
PROTOBUF = re.compile(r"^google/protobuf/|\.pb\.h$")
HIREDIS = re.compile(r"^hiredis/|^(async|hiredis)\.h$")
LIBEVENT = re.compile(r"^event2?/|^event\.h$")
GTEST = re.compile(r"^(gtest|gmock)/")
PUBLIC_PROTO = re.compile(r"^abexp/v1/")
TESTING = re.compile(r"^(server/testing|stats/testing|tests)/")


def layer_of(path):
    """The layer of a repository-relative source path."""
    if re.search(r"_test\.cc$", path) or TESTING.match(path):
        return "test"
    for prefix, layer in (("server/core/", "core"),
                          ("server/http/", "http"),
                          ("server/ofrep/", "ofrep"),
                          ("server/storage/", "storage"),
                          ("server/metrics/", "metrics"),
                          ("server/service/", "service"),
                          ("server/", "process"),
                          ("stats/", "stats"),
                          ("client/", "client"),
                          ("bench/", "bench")):
        if path.startswith(prefix):
            return layer
    return "other"


def violations(layer, header):
    """The rules `header` breaks when included from `layer`, as messages."""
    found = []
    if layer == "test":
        return found
    if TESTING.match(header) or GTEST.match(header):
        found.append("production code includes a testing header; move what it "
                     "needs out of the testing folder, or the code into a test")
    forbidden = {
        "core": [(GRPC, "gRPC"), (PROTOBUF, "protobuf"), (HIREDIS, "hiredis"),
                 (LIBEVENT, "libevent"),
                 (re.compile(r"^server/(storage|service|metrics)/|^server/[^/]+$"),
                  "a layer above the core")],
        "metrics": [(GRPC, "gRPC"), (HIREDIS, "hiredis"), (LIBEVENT, "libevent"),
                    (re.compile(r"^server/(storage|service)/|^server/[^/]+$"),
                     "a layer above metrics")],
        "storage": [(GRPC, "gRPC"), (PUBLIC_PROTO, "the public API protos"),
                    (re.compile(r"^server/service/|^server/[^/]+$"),
                     "a layer above storage")],
        "http": [(GRPC, "gRPC"), (PROTOBUF, "protobuf"), (HIREDIS, "hiredis"),
                 (LIBEVENT, "libevent"), (re.compile(r"^httplib\.h$"), "an HTTP library"),
                 (re.compile(r"^server/(storage|service|metrics|ofrep)/|^server/[^/]+$"),
                  "a layer above the core (routes' types see only the core)")],
        "ofrep": [(GRPC, "gRPC"), (PROTOBUF, "protobuf"), (HIREDIS, "hiredis"),
                  (LIBEVENT, "libevent"), (re.compile(r"^httplib\.h$"), "an HTTP library"),
                  (re.compile(r"^server/(storage|service)/|^server/[^/]+$"),
                   "storage, the gRPC service or the process (OFREP is an "
                   "adapter over the core, like server/service/)")],
        "service": [(re.compile(r"^server/storage/|^server/[^/]+$"),
                     "storage or the process (services see storage only "
                     "through core's EventStore interface)")],
        "stats": [(GRPC, "gRPC"), (PROTOBUF, "protobuf"), (HIREDIS, "hiredis"),
                  (re.compile(r"^(server|client)/"), "server or client code")],
    }
    for pattern, what in forbidden.get(layer, []):
        if pattern.search(header):
            found.append(f"{layer} must not depend on {what}")
    return found


def check(root):
    problems = []
    checked = 0
    for folder in FOLDERS:
        for dirpath, dirnames, filenames in os.walk(os.path.join(root, folder)):
            dirnames.sort()
            for name in sorted(filenames):
                if not SOURCE.search(name):
                    continue
                full = os.path.join(dirpath, name)
                path = os.path.relpath(full, root)
                layer = layer_of(path)
                checked += 1
                with open(full, encoding="utf-8", errors="replace") as f:
                    for number, line in enumerate(f, 1):
                        m = INCLUDE.match(line)
                        if not m:
                            continue
                        for why in violations(layer, m.group(2)):
                            problems.append(f"{path}:{number}: #include "
                                            f"{m.group(1)}{m.group(2)}: {why}")
    return checked, problems


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(here))
    checked, problems = check(root)
    if checked == 0:
        print(f"check-layers: no sources under {root}; pass the repository root",
              file=sys.stderr)
        return 1
    if problems:
        print(f"check-layers: {len(problems)} include(s) break the layering "
              "(docs/architecture.md):", file=sys.stderr)
        for p in problems:
            print(f"  {p}", file=sys.stderr)
        return 1
    print(f"check-layers: OK: {checked} files, every include points down")
    return 0


if __name__ == "__main__":
    sys.exit(main())
