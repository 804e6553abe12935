#!/usr/bin/env bash
# Installs the npm packages package-lock.json pins (@openfeature/server-sdk,
# @openfeature/ofrep-provider) into DEST/node_modules with `npm ci`, once per
# lock file: a later run finds them (a stamp holds the lock's hash) and
# makes no network call, and a new DEST is filled from npm's cache
# (--prefer-offline) before the registry is asked.
#
# Usage: tests/ofrep/install.sh DEST
# Cache: $ABEXP_NPM_CACHE, default ~/.cache/abexp-npm.
# Exit 1, saying what to do, when npm is missing or the registry cannot be
# reached for a package the cache lacks.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dest=${1:?usage: tests/ofrep/install.sh DEST}
mkdir -p "$dest"
stamp="$dest/node_modules/.abexp-lock-sha256"
want=$(sha256sum "$here/package-lock.json" | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
if ! command -v npm >/dev/null 2>&1 || ! command -v node >/dev/null 2>&1; then
  echo "tests/ofrep: node and npm are needed for the OpenFeature SDK test;" \
       "install them with scripts/install-deps.sh (Debian's nodejs and npm)" >&2
  exit 1
fi
cp "$here/package.json" "$here/package-lock.json" "$dest/"
cache=${ABEXP_NPM_CACHE:-${HOME:-/tmp}/.cache/abexp-npm}
if ! (cd "$dest" && npm ci --prefer-offline --no-audit --no-fund \
        --cache "$cache" >"$dest/npm.log" 2>&1); then
  echo "tests/ofrep: npm ci could not install the pinned OpenFeature" \
       "packages into $dest (full log: $dest/npm.log). The first run needs" \
       "the npm registry (https://registry.npmjs.org, or the one" \
       "'npm config get registry' names; set a proxy with 'npm config set" \
       "proxy'); later runs use the cache $cache offline. Last lines:" >&2
  tail -5 "$dest/npm.log" >&2
  exit 1
fi
echo "$want" >"$stamp"
