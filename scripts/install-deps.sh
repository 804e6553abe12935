#!/usr/bin/env bash
# Installs every Debian 12 (bookworm) package abexp needs to build, test and
# run. Idempotent: packages already installed are skipped, and when nothing is
# missing it makes no network call. Run as root (or with sudo available).
set -euo pipefail

packages=(
  # toolchain
  build-essential cmake ninja-build pkg-config
  # C++ libraries
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev libhiredis-dev libyaml-cpp-dev libre2-dev libxxhash-dev
  libboost-math-dev libgtest-dev libgmock-dev libbenchmark-dev
  # operators' metrics (prometheus-cpp's registry and text format), the
  # HTTP listener that serves them and OFREP (libevent's evhttp), OFREP's
  # JSON (nlohmann-json), and the tests' HTTP client (cpp-httplib)
  prometheus-cpp-dev libevent-dev libcpp-httplib-dev nlohmann-json3-dev
  # tests/ofrep: the OpenFeature SDK and OFREP provider run on Node.js (npm
  # is added below unless Node.js came with one)
  nodejs
  # the Clang build of scripts/sanitize.sh and scripts/fuzz.sh: Clang, its
  # libFuzzer and sanitizer runtimes, and llvm-symbolizer for readable stack
  # traces
  clang libclang-rt-14-dev llvm
  # scripts/check-format.sh: the layout .clang-format describes
  clang-format-14
  # the Bazel build in bazel-alternative/ (Bazel 4.2.3, run offline)
  bazel-bootstrap
  # event store, for running and for the integration tests
  redis-server redis-tools
  # cross-language tests (Debian's python3, not a pyenv one) and the README's
  # Python client recipe, which generates its code with protoc and
  # grpc_python_plugin (protobuf-compiler, protobuf-compiler-grpc above; not
  # python3-grpc-tools, whose protoc 3.5 rejects proto3 `optional`)
  python3 python3-xxhash python3-grpcio python3-protobuf
  python3-scipy python3-statsmodels
  # bench/h2load.sh: R1 measured by a load generator that is not abexp's own
  nghttp2-client
  # bench/run.sh's R12: OFREP evaluations over HTTP/1.1 keep-alive
  wrk
  # TLS tests: server/testing/test_certs.h makes certificates with its CLI
  openssl
  # tests/metrics_e2e_test: `promtool check metrics` on what /metrics serves
  prometheus
  # scripts/run.sh's hints and the README read /metrics and /readyz with it
  curl
  # tests/report_browser_test: the `abexp report` page in headless Chromium
  chromium-headless-shell
  # tests/packaging: scripts/package.sh's cpack -G DEB with dpkg-shlibdeps
  # (dpkg-dev), fakeroot-free; `systemd-analyze verify` on the unit (systemd;
  # installing it in a container starts nothing); readelf (binutils); CPack's
  # DEB generator runs `file` on every binary before dpkg-shlibdeps
  dpkg-dev binutils systemd file
)

# Debian's npm conflicts with a Node.js that bundles its own (NodeSource's):
# ask for it only when no npm is on PATH.
if ! command -v npm >/dev/null 2>&1; then
  packages+=(npm)
fi

missing=()
for p in "${packages[@]}"; do
  if [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" != "install ok installed" ]; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages already installed"
  exit 0
fi

echo "install-deps: installing ${#missing[@]} missing packages: ${missing[*]}"
sudo=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    sudo=(sudo)
  else
    echo "install-deps: not root and no sudo; run as root: ./scripts/install-deps.sh" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update
"${sudo[@]}" apt-get install -y --no-install-recommends "${missing[@]}"
echo "install-deps: installed ${missing[*]}"
