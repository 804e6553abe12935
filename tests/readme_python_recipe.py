#!/usr/bin/python3
"""Runs the README's Python recipe against a running abexp-server.

The commands and the Python code are read from README.md's section "Using it
from another language", so the README cannot drift from what is tested: the
```sh block generates the client code, and each ```python block runs as a
script of its own, as a reader would paste it. The recipe's output directory
(/tmp/abexp-py) and server address (127.0.0.1:50051) are replaced by the
test's own.

tests/readme_python_test.cc starts redis-server and abexp-server and runs
this script; it exits 0 when the recipe built the clients of all three
services and made one successful call of each.
"""

import argparse
import os
import re
import subprocess
import sys

SECTION = "## Using it from another language"
OUT_DIR = "/tmp/abexp-py"
ADDRESS = "127.0.0.1:50051"
PROTOS = ("assignment", "recording", "results")


def recipe_blocks(readme_text):
    """The (language, code) fenced blocks of the recipe's section."""
    start = readme_text.find("\n" + SECTION + "\n")
    if start < 0:
        sys.exit(f"README.md has no section '{SECTION}'")
    end = readme_text.find("\n## ", start + 1)
    section = readme_text[start:] if end < 0 else readme_text[start:end]
    return re.findall(r"^```(\w+)\n(.*?)^```$", section, re.M | re.S)


def run(argv, what, **kwargs):
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120,
                          **kwargs)
    if done.returncode != 0:
        sys.exit(f"{what} failed with exit code {done.returncode}:\n"
                 f"--- stdout\n{done.stdout}--- stderr\n{done.stderr}")
    return done.stdout


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repo", required=True, help="repository root")
    parser.add_argument("--server", required=True, help="HOST:PORT")
    parser.add_argument("--workdir", required=True, help="an empty directory")
    parser.add_argument("--config_version", required=True,
                        help="the version the server serves")
    args = parser.parse_args()

    with open(os.path.join(args.repo, "README.md"), encoding="utf-8") as f:
        blocks = recipe_blocks(f.read())
    shell = [code for lang, code in blocks if lang == "sh"]
    python = [code for lang, code in blocks if lang == "python"]
    if len(shell) != 1 or not python:
        sys.exit(f"expected one sh block and python blocks in '{SECTION}', "
                 f"found {len(shell)} sh and {len(python)} python")
    out_dir = os.path.join(args.workdir, "abexp-py")
    for code in shell + python:
        if OUT_DIR not in code:
            sys.exit(f"a recipe block does not use {OUT_DIR}:\n{code}")

    # The commands, from the repository root as the README runs them.
    run(["bash", "-euo", "pipefail", "-c", shell[0].replace(OUT_DIR, out_dir)],
        "the README's sh block", cwd=args.repo)
    for proto in PROTOS:
        for suffix in ("_pb2.py", "_pb2_grpc.py"):
            path = os.path.join(out_dir, "abexp", "v1", proto + suffix)
            if not os.path.isfile(path):
                sys.exit(f"the sh block did not generate {path}")

    # Each Python block on its own, from an unrelated directory.
    output = ""
    for i, code in enumerate(python):
        if ADDRESS not in code:
            sys.exit(f"python block {i + 1} does not call {ADDRESS}:\n{code}")
        script = os.path.join(args.workdir, f"block{i + 1}.py")
        with open(script, "w", encoding="utf-8") as f:
            f.write(code.replace(OUT_DIR, out_dir).replace(ADDRESS,
                                                           args.server))
        output += run([sys.executable, script], f"python block {i + 1}",
                      cwd=args.workdir, env={"PATH": os.environ["PATH"]})
    print(output, end="")

    # One call of each service answered, and the recorded exposure shows in
    # the results.
    expected = [
        f"config {args.config_version}",                   # Assign
        "exposure RECORD_OUTCOME_RECORDED",                  # RecordExposures
        "event RECORD_OUTCOME_RECORDED",                     # RecordEvents
        "one_page: 1 exposed",                               # GetResults
    ]
    lines = output.splitlines()
    missing = [e for e in expected if e not in lines]
    if missing:
        sys.exit(f"the recipe's output lacks the lines {missing}:\n{output}")


if __name__ == "__main__":
    main()
