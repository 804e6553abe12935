#!/usr/bin/env python3
"""Checks that abexp's C++ bucketing reproduces every test vector published in
docs/bucketing.md, so the document cannot drift from the code.

Usage: bucketing_doc_vectors_test.py --tool build/tests/bucket_tool --doc docs/bucketing.md
Exits 1 on any mismatch, naming the row and how to regenerate it.
"""

import argparse
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bucketing_vectors  # noqa: E402

MIN_VECTORS = 20


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tool", required=True)
    ap.add_argument("--doc", required=True)
    args = ap.parse_args()

    try:
        vectors = bucketing_vectors.parse(args.doc)
    except ValueError as e:
        print("bucketing_doc_vectors: FAIL: %s" % e)
        return 1
    failures = []
    if len(vectors) < MIN_VECTORS:
        failures.append("the doc publishes %d vectors; keep at least %d" % (len(vectors), MIN_VECTORS))
    numbers = [v.number for v in vectors]
    if numbers != list(range(1, len(vectors) + 1)):
        failures.append("vector numbers are %s; number them 1, 2, 3, ..." % numbers)

    request = "".join("%s\t%s\t%s\n" % (v.purpose, v.salt, v.unit_id.hex()) for v in vectors)
    proc = subprocess.run([args.tool], input=request.encode("utf-8"),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    if proc.returncode != 0:
        print("bucketing_doc_vectors: FAIL: bucket_tool exited %d: %s" % (
            proc.returncode, proc.stderr.decode(errors="replace").strip()))
        return 1
    for v, line in zip(vectors, proc.stdout.decode().splitlines()):
        expected = "%s\t%s\t%d" % (v.hash_input.hex(), v.hash_hex, v.bucket)
        if line != expected:
            failures.append("%r: the doc says\n    %s\n  the code computes\n    %s\n"
                            "  (regenerate the row with: printf '%s\\t%s\\t%s\\n' | bucket_tool)" % (
                                v, expected.replace("\t", "  "), line.replace("\t", "  "),
                                v.purpose, v.salt, v.unit_id.hex()))

    for f in failures:
        print("MISMATCH", f)
    print("bucketing_doc_vectors: %s: %d vectors from %s checked against the C++; %d mismatches" % (
        "FAIL" if failures else "OK", len(vectors), args.doc, len(failures)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
