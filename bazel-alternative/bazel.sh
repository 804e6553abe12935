#!/usr/bin/env bash
# Runs Debian's Bazel (bazel-bootstrap 4.2.3) on this workspace, e.g.
#   ./bazel.sh build //... && ./bazel.sh test //...
# from any directory. The arguments are Bazel's. This adds the startup
# options: Bazel's outputs and its own files go under
# ${ABEXP_BUILD_DIR:-build}/bazel in the repository root (or
# $ABEXP_BAZEL_ROOT), beside the CMake build, so repeated runs are
# incremental and removing the build dir removes them too; and the Bazel
# server exits after ABEXP_BAZEL_IDLE_SECS (default 900) idle seconds
# instead of three hours.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")

if ! command -v bazel >/dev/null 2>&1; then
  echo "bazel.sh: no bazel on PATH; install Debian's bazel-bootstrap: ./scripts/install-deps.sh" >&2
  exit 1
fi

build_dir=${ABEXP_BUILD_DIR:-build}
case "$build_dir" in
  /*) ;;
  *) build_dir="$root/$build_dir" ;;
esac
output_root=${ABEXP_BAZEL_ROOT:-$build_dir/bazel}
mkdir -p "$output_root"

cd "$here"
exec bazel --output_user_root="$output_root" \
  --max_idle_secs="${ABEXP_BAZEL_IDLE_SECS:-900}" "$@"
