#!/usr/bin/env bash
# Checks that every C++ source the repository tracks is laid out as
# .clang-format says (Google style), with Debian 12's clang-format 14.
# Exits 1 naming each file that is not, with the command that fixes it.
#
# Usage: scripts/check-format.sh [--fix] [FILE...]
#   no FILE: every *.cc and *.h under server/, client/, stats/, bench/,
#            tests/ and proto/ (found on disk: CI's machine may have no git)
#   --fix:   reformat the files in place instead of checking them
# A FILE that is not *.cc or *.h stops it (exit 2) before anything changes.
set -euo pipefail
cd "$(dirname "$0")/.."

fix=0
if [ "${1:-}" = --fix ]; then
  fix=1
  shift
fi
tool=$(command -v clang-format-14 || command -v clang-format || true)
if [ -z "$tool" ]; then
  echo "check-format: clang-format 14 not found; run scripts/install-deps.sh (it installs clang-format)" >&2
  exit 1
fi

if [ $# -gt 0 ]; then
  files=("$@")
  # clang-format takes any file for C++ and would rewrite, say, a Markdown
  # page as code: refuse the run, changing nothing, if one is not C++.
  not_cxx=()
  for f in "${files[@]}"; do
    case $f in
      *.cc | *.h) ;;
      *) not_cxx+=("$f") ;;
    esac
  done
  if [ ${#not_cxx[@]} -gt 0 ]; then
    echo "check-format: not C++ sources (*.cc, *.h), so not formatted or checked: ${not_cxx[*]}; nothing was changed. Name only C++ files, or none to check them all" >&2
    exit 2
  fi
else
  mapfile -t files < <(find server client stats bench tests proto -type f \
    \( -name '*.cc' -o -name '*.h' \) | LC_ALL=C sort)
fi
if [ ${#files[@]} = 0 ]; then
  echo "check-format: no C++ files to check" >&2
  exit 1
fi

if [ "$fix" = 1 ]; then
  "$tool" -i --style=file "${files[@]}"
  echo "check-format: reformatted ${#files[@]} files"
  exit 0
fi

bad=()
for f in "${files[@]}"; do
  if ! "$tool" --dry-run --Werror --style=file "$f" >/dev/null 2>&1; then
    bad+=("$f")
  fi
done
if [ ${#bad[@]} -gt 0 ]; then
  echo "check-format: ${#bad[@]} of ${#files[@]} files are not formatted as .clang-format says:" >&2
  printf '  %s\n' "${bad[@]}" >&2
  echo "check-format: fix them with: scripts/check-format.sh --fix ${bad[*]}" >&2
  exit 1
fi
echo "check-format: OK: ${#files[@]} files match .clang-format"
