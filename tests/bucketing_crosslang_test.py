#!/usr/bin/env python3
"""Cross-language check of the bucketing spec (docs/bucketing.md).

An independent Python implementation, written from the document alone, is
compared with abexp's C++ (through tests/bucket_tool) on tens of thousands of
seeded random unit ids, every purpose, and a set of weight/traffic
combinations. It also reproduces the document's published test vectors.

Usage: bucketing_crosslang_test.py --tool build/tests/bucket_tool --doc docs/bucketing.md
Needs Debian's python3-xxhash. Exits 1 on any mismatch.
"""

import argparse
import os
import random
import struct
import subprocess
import sys

try:
    import xxhash
except ImportError:
    sys.exit("bucketing_crosslang: the xxhash module is missing; run it with Debian's "
             "/usr/bin/python3 after `apt-get install python3-xxhash` (scripts/install-deps.sh)")

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bucketing_vectors  # noqa: E402

NUM_BUCKETS = 10000
PURPOSES = ("variant", "layer", "holdout", "rollout")
SEED = 20261101
NUM_IDS = 12000


# --- The spec, from docs/bucketing.md -------------------------------------

def hash_input(purpose, salt, unit_id):
    """u32le(len) + bytes, for the purpose tag, the salt and the unit id."""
    out = b""
    for field in (purpose.encode("utf-8"), salt, unit_id):
        out += struct.pack("<I", len(field)) + field
    return out


def bucket(purpose, salt, unit_id):
    data = hash_input(purpose, salt, unit_id)
    h = xxhash.xxh3_64_intdigest(data, seed=0)
    return data, h, h % NUM_BUCKETS


def variant_ranges(weights, traffic_bp):
    total = sum(weights)
    full, active = [], []
    cumulative = 0
    for w in weights:
        start = NUM_BUCKETS * cumulative // total
        cumulative += w
        end = NUM_BUCKETS * cumulative // total
        full.append((start, end))
        active.append((start, start + (end - start) * traffic_bp // NUM_BUCKETS))
    return full, active


# --- Test data -------------------------------------------------------------

def random_unit_id(rng):
    kind = rng.randrange(9)
    if kind == 0:  # ASCII, as most systems hand out
        n = rng.randint(1, 40)
        return "".join(rng.choice("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:@")
                       for _ in range(n)).encode()
    if kind == 1:  # numeric
        return str(rng.choice([rng.randrange(10), rng.randrange(10**6), rng.randrange(2**64)])).encode()
    if kind == 2:  # Chinese
        return "".join(chr(rng.randint(0x4E00, 0x9FFF)) for _ in range(rng.randint(1, 20))).encode()
    if kind == 3:  # emoji, some with ZWJ sequences and skin tones
        parts = []
        for _ in range(rng.randint(1, 8)):
            parts.append(chr(rng.randint(0x1F300, 0x1FAFF)))
            if rng.random() < 0.3:
                parts.append(rng.choice(["\u200d", "\U0001F3FD", "\ufe0f"]))
        return "".join(parts).encode()
    if kind == 4:  # mixed scripts
        return ("user-" + chr(rng.randint(0x4E00, 0x9FFF)) + str(rng.randrange(1000)) +
                chr(rng.randint(0x1F600, 0x1F64F))).encode()
    if kind == 5:  # empty
        return b""
    if kind == 6:  # the longest id allowed: 256 bytes
        return bytes(rng.choice(b"0123456789abcdef") for _ in range(256))
    if kind == 7:  # 256 bytes of 4-byte emoji
        return "".join(chr(rng.randint(0x1F600, 0x1F64F)) for _ in range(64)).encode()
    # arbitrary bytes, including NUL, TAB and newline: the spec is over bytes
    return bytes(rng.randrange(256) for _ in range(rng.randint(1, 300)))


SALTS = ["one_page_checkout", "checkout", "abexp-global-holdout", "global-holdout",
         "new_search.rule1", "checkout_flow.rule0", "exp1", "exp12", "", "首页改版",
         "s" * 64, "landing-headline.v2"]


def random_weights(rng):
    n = rng.randint(1, 6)
    scale = rng.choice([1, 10000])  # decimal weights are stored x10000
    weights = [rng.randint(0, 100) * scale for _ in range(n)]
    if sum(weights) == 0:
        weights[0] = scale
    return weights


# --- Running the C++ -------------------------------------------------------

def run_tool(tool, lines):
    proc = subprocess.run([tool], input="".join(l + "\n" for l in lines).encode("utf-8"),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=240)
    if proc.returncode != 0:
        sys.exit("bucket_tool failed (exit %d): %s" % (proc.returncode, proc.stderr.decode(errors="replace")))
    out = proc.stdout.decode().splitlines()
    if len(out) != len(lines):
        sys.exit("bucket_tool answered %d lines for %d requests" % (len(out), len(lines)))
    return out


def format_ranges(ranges):
    return ",".join("%d-%d" % r for r in ranges)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tool", required=True, help="path to the bucket_tool binary")
    ap.add_argument("--doc", required=True, help="path to docs/bucketing.md")
    args = ap.parse_args()

    rng = random.Random(SEED)
    failures = []

    # Hashes: every id under every purpose, with a random salt each.
    cases = []
    for _ in range(NUM_IDS):
        uid = random_unit_id(rng)
        for purpose in PURPOSES:
            cases.append((purpose, rng.choice(SALTS), uid))
    # The framing must tell apart ids that share a concatenation.
    cases += [("variant", "exp1", b"23"), ("variant", "exp12", b"3"),
              ("variant", "exp1", b""), ("variant", "", b"exp1")]
    out = run_tool(args.tool, ["%s\t%s\t%s" % (p, s, u.hex()) for p, s, u in cases])
    kinds = {"empty": 0, "256-byte": 0, "non-ASCII": 0}
    for (purpose, salt, uid), line in zip(cases, out):
        data, h, b = bucket(purpose, salt.encode("utf-8"), uid)
        expected = "%s\t%016x\t%d" % (data.hex(), h, b)
        if line != expected:
            failures.append("%s salt=%r id=%s: C++ %r, Python %r" % (purpose, salt, uid.hex(), line, expected))
        kinds["empty"] += uid == b""
        kinds["256-byte"] += len(uid) == 256
        kinds["non-ASCII"] += any(c >= 0x80 for c in uid)
    for kind, n in kinds.items():
        if n == 0:
            failures.append("the random ids include no %s id; the seed or generator changed" % kind)
    by_salt = {}
    for (purpose, salt, uid), line in zip(cases[-4:], out[-4:]):
        by_salt[(salt, uid)] = line.split("\t")[1]
    if by_salt[("exp1", b"23")] == by_salt[("exp12", b"3")]:
        failures.append("salt exp1 + id 23 hashes like salt exp12 + id 3: the framing is ambiguous")

    # Variant ranges.
    range_cases = [([50, 50], 10000), ([50, 50], 5000), ([20, 30, 50], 1000),
                   ([1, 1, 1], 10000), ([1, 1, 1], 3333), ([333300, 666700], 2500),
                   ([7, 0, 3], 10000), ([1], 1), ([0, 5], 9999), ([1, 2, 3, 4, 5, 6], 0)]
    for _ in range(500):
        range_cases.append((random_weights(rng), rng.choice([0, 1, 100, 1000, 2500, 5000, 9999, 10000,
                                                             rng.randint(0, 10000)])))
    out = run_tool(args.tool, ["ranges\t%d\t%s" % (t, ",".join(map(str, w))) for w, t in range_cases])
    for (weights, traffic), line in zip(range_cases, out):
        full, active = variant_ranges(weights, traffic)
        expected = "%s\t%s" % (format_ranges(full), format_ranges(active))
        if line != expected:
            failures.append("ranges weights=%s traffic=%d: C++ %r, Python %r" % (weights, traffic, line, expected))

    # The published vectors, computed by Python.
    vectors = bucketing_vectors.parse(args.doc)
    for v in vectors:
        data, h, b = bucket(v.purpose, v.salt.encode("utf-8"), v.unit_id)
        if (data, "%016x" % h, b) != (v.hash_input, v.hash_hex, v.bucket):
            failures.append("%r: the doc says %s %s %d, Python computes %s %016x %d" % (
                v, v.hash_input.hex(), v.hash_hex, v.bucket, data.hex(), h, b))

    for f in failures[:20]:
        print("MISMATCH", f)
    if len(failures) > 20:
        print("... and %d more" % (len(failures) - 20))
    status = "FAIL" if failures else "OK"
    print("bucketing_crosslang: %s: %d hashes (%d ids x %d purposes + %d framing cases; of them "
          "%d of empty ids, %d of 256-byte ids, %d of non-ASCII ids), %d range sets, "
          "%d doc vectors; %d mismatches" % (
              status, len(cases), NUM_IDS, len(PURPOSES), 4, kinds["empty"], kinds["256-byte"],
              kinds["non-ASCII"], len(range_cases), len(vectors), len(failures)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
