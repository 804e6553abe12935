"""Reads the test-vector table published in docs/bucketing.md.

The table sits between the markers <!-- test-vectors:begin --> and
<!-- test-vectors:end -->, with the columns
  # | purpose | salt | unit id | unit id (hex) | hash input (hex) | XXH3-64 | bucket
"""

import re

BEGIN = "<!-- test-vectors:begin -->"
END = "<!-- test-vectors:end -->"


class Vector:
    def __init__(self, number, purpose, salt, display, unit_id, hash_input, hash_hex, bucket):
        self.number = number
        self.purpose = purpose
        self.salt = salt  # str
        self.display = display  # the "unit id" cell as written
        self.unit_id = unit_id  # bytes
        self.hash_input = hash_input  # bytes
        self.hash_hex = hash_hex  # 16 lowercase hex digits
        self.bucket = bucket  # int

    def __repr__(self):
        return "vector #%d (%s, salt %r, unit id %s)" % (
            self.number, self.purpose, self.salt, self.display)


def _unquote(cell):
    cell = cell.strip()
    if cell == "(empty)":
        return ""
    m = re.fullmatch(r"`(.*)`", cell)
    return m.group(1) if m else cell


def parse(doc_path):
    """Returns the vectors; raises ValueError naming the line of a bad row."""
    with open(doc_path, encoding="utf-8") as f:
        text = f.read()
    if BEGIN not in text or END not in text:
        raise ValueError("%s: missing %s ... %s around the test-vector table" % (doc_path, BEGIN, END))
    start = text.index(BEGIN)
    first_line = text.count("\n", 0, start) + 1
    body = text[start:text.index(END)]
    vectors = []
    for offset, line in enumerate(body.splitlines()):
        line = line.strip()
        if not line.startswith("|"):
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[0] in ("#", "") or set(cells[0]) <= set("-: "):
            continue  # header or separator
        where = "%s:%d" % (doc_path, first_line + offset)
        if len(cells) != 8:
            raise ValueError("%s: expected 8 cells, got %d" % (where, len(cells)))
        try:
            vectors.append(Vector(
                number=int(cells[0]),
                purpose=_unquote(cells[1]),
                salt=_unquote(cells[2]),
                display=cells[3],
                unit_id=bytes.fromhex(_unquote(cells[4])),
                hash_input=bytes.fromhex(_unquote(cells[5])),
                hash_hex=_unquote(cells[6]),
                bucket=int(_unquote(cells[7])),
            ))
        except ValueError as e:
            raise ValueError("%s: %s" % (where, e))
        v = vectors[-1]
        # A unit id written as `text` must be exactly those UTF-8 bytes.
        if re.fullmatch(r"`.*`", v.display) and _unquote(v.display).encode("utf-8") != v.unit_id:
            raise ValueError("%s: unit id %s is not the bytes %s" % (where, v.display, v.unit_id.hex()))
        if v.display == "(empty)" and v.unit_id:
            raise ValueError("%s: unit id (empty) has bytes %s" % (where, v.unit_id.hex()))
    return vectors
