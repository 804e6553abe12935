#!/usr/bin/env bash
# Drift check between the CMake build and the Bazel build in this folder.
# Fails (exit 1), naming each file, when a source (C++, .proto, or a .lua
# script that a build embeds) in proto/, server/, client/ or stats/
#   - is built by CMake (named in a CMakeLists.txt there) but not named in
#     bazel-alternative/BUILD.bazel;
#   - is a .cc, .proto or .lua named in BUILD.bazel but in no CMakeLists.txt;
#   - is a header (CMake does not list headers) not named in BUILD.bazel;
#   - is a .cc, .proto or .lua on disk that neither build names;
#   - is named in either build but does not exist.
# Generated files (*.pb.h, *.pb.cc, *.gen.h, *.gen.cc) are not sources and
# are skipped.
#
# Usage: bazel-alternative/check-sources.sh [REPO_ROOT]
# (REPO_ROOT defaults to this script's parent folder.) Needs only python3.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=${1:-$(dirname "$here")}
exec python3 - "$root" <<'PY'
import os
import re
import sys

root = os.path.abspath(sys.argv[1])
FOLDERS = ("proto", "server", "client", "stats")
SOURCE = re.compile(r"\.(cc|cpp|c|h|hpp|proto|lua)$")
GENERATED = re.compile(r"\.(pb|gen)\.(h|cc)$")
BUILD = "bazel-alternative/BUILD.bazel"


def strip_comments(text, quotes):
    """Drops '#' comments, keeping '#' inside string literals."""
    out = []
    for line in text.splitlines():
        quote = None
        kept = []
        i = 0
        while i < len(line):
            c = line[i]
            if quote:
                if c == "\\" and i + 1 < len(line):
                    kept.append(line[i:i + 2])
                    i += 2
                    continue
                if c == quote:
                    quote = None
            elif c in quotes:
                quote = c
            elif c == "#":
                break
            kept.append(c)
            i += 1
        out.append("".join(kept))
    return "\n".join(out)


def in_scope(path):
    return path.split("/", 1)[0] in FOLDERS and not GENERATED.search(path)


def cmake_sources():
    """Every source file named in proto/, server/, client/, stats/ CMake files.

    Any CMake argument ending in a source extension counts, whatever command
    it appears in (add_library, add_executable, abexp_add_test, set, ...),
    so a new command or helper cannot hide a file from the check.
    """
    found = {}
    for folder in FOLDERS:
        for dirpath, dirnames, filenames in os.walk(os.path.join(root, folder)):
            dirnames.sort()
            if "CMakeLists.txt" not in filenames:
                continue
            cmake_file = os.path.join(dirpath, "CMakeLists.txt")
            cmake_dir = os.path.relpath(dirpath, root)
            with open(cmake_file, encoding="utf-8") as f:
                text = strip_comments(f.read(), '"')
            for token in re.split(r"[\s()\"]+", text):
                if not SOURCE.search(token) or GENERATED.search(token):
                    continue
                for var in ("${CMAKE_CURRENT_SOURCE_DIR}/", "${CMAKE_CURRENT_LIST_DIR}/"):
                    if token.startswith(var):
                        token = token[len(var):]
                if token.startswith("${PROJECT_SOURCE_DIR}/"):
                    path = token[len("${PROJECT_SOURCE_DIR}/"):]
                elif "$" in token or token.startswith("/"):
                    sys.exit(f"check-sources: cannot resolve '{token}' in "
                             f"{os.path.relpath(cmake_file, root)}; name sources "
                             "relative to the CMakeLists.txt folder")
                else:
                    path = os.path.normpath(os.path.join(cmake_dir, token))
                if in_scope(path):
                    found.setdefault(path, os.path.relpath(cmake_file, root))
    return found


def bazel_sources():
    """Every source path in BUILD.bazel string literals (paths from the root)."""
    with open(os.path.join(root, BUILD), encoding="utf-8") as f:
        text = strip_comments(f.read(), "\"'")
    found = set()
    for literal in re.findall(r'"([^"\n]*)"|\'([^\'\n]*)\'', text):
        path = literal[0] or literal[1]
        if SOURCE.search(path) and in_scope(path):
            found.add(os.path.normpath(path))
    return found


def disk_sources():
    found = set()
    for folder in FOLDERS:
        for dirpath, dirnames, filenames in os.walk(os.path.join(root, folder)):
            for name in filenames:
                path = os.path.relpath(os.path.join(dirpath, name), root)
                if SOURCE.search(name) and in_scope(path):
                    found.add(path)
    return found


cmake = cmake_sources()
bazel = bazel_sources()
disk = disk_sources()
problems = []

for path in sorted(set(cmake) - bazel):
    target = ("the srcs of the genrule that embeds it" if path.endswith(".lua")
              else "the matching target")
    problems.append(f"{path}: built by CMake ({cmake[path]}) but missing from "
                    f"{BUILD}; add it to {target} there")
for path in sorted(bazel - set(cmake)):
    if not path.endswith((".h", ".hpp")):
        problems.append(f"{path}: named in {BUILD} but in no CMakeLists.txt; "
                        "add it to the CMake target too, or remove it from Bazel")
for path in sorted(disk - bazel):
    if path.endswith((".h", ".hpp")):
        problems.append(f"{path}: header missing from {BUILD}; add it to the "
                        "hdrs (or srcs) of the target it belongs to")
    elif path not in cmake:
        problems.append(f"{path}: neither CMake nor Bazel builds it; add it to "
                        f"both builds, or delete it")
for path in sorted((set(cmake) | bazel) - disk):
    where = cmake[path] if path in cmake else BUILD
    problems.append(f"{path}: named in {where} but the file does not exist")

if problems:
    print(f"check-sources: the CMake and Bazel builds disagree ({len(problems)} "
          "problem(s)):", file=sys.stderr)
    for p in problems:
        print(f"  {p}", file=sys.stderr)
    sys.exit(1)
print(f"check-sources: OK: {len(cmake)} sources CMake builds in "
      f"{', '.join(FOLDERS)}, all named in {BUILD} with their "
      f"{len(bazel) - len(set(cmake) & bazel)} headers")
PY
