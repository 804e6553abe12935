"""scripts/check-format.sh: it finds a C++ file laid out against
.clang-format and --fix lays it out; a file that is not C++ stops it before
anything is changed (clang-format would rewrite a Markdown page as code)."""
import os
import shutil
import subprocess
import tempfile
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHECK = os.path.join(ROOT, "scripts", "check-format.sh")
# Laid out against Google style: one line for a function that needs three,
# no spaces around the operator, a brace on its own line.
MISFORMATTED = "int  Add(int a,int b)\n{return a+b;}\n"


def run(*args):
    return subprocess.run([CHECK, *args], capture_output=True, text=True)


class CheckFormatTest(unittest.TestCase):
    def scratch(self):
        # Inside the repository, so that clang-format finds its .clang-format.
        d = tempfile.mkdtemp(prefix="check-format-test.", dir=os.path.join(ROOT, "tests"))
        self.addCleanup(shutil.rmtree, d)
        return d

    def write(self, path, text):
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)

    def read(self, path):
        with open(path, encoding="utf-8") as f:
            return f.read()

    def test_finds_a_misformatted_file_and_fix_lays_it_out(self):
        cc = os.path.join(self.scratch(), "add.cc")
        self.write(cc, MISFORMATTED)
        r = run(cc)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn(cc, r.stderr)
        self.assertIn("--fix", r.stderr)
        r = run("--fix", cc)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual(self.read(cc), "int Add(int a, int b) { return a + b; }\n")
        r = run(cc)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_a_file_that_is_not_cxx_stops_it_and_nothing_changes(self):
        d = self.scratch()
        md = os.path.join(d, "notes.md")
        cc = os.path.join(d, "add.cc")
        page = "# Notes\n\n- one  {item}\n- int  Add(int a,int b)\n"
        self.write(md, page)
        self.write(cc, MISFORMATTED)
        r = run("--fix", cc, md)
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
        self.assertIn("not C++", r.stderr)
        self.assertIn(md, r.stderr)
        self.assertEqual(self.read(md), page)
        self.assertEqual(self.read(cc), MISFORMATTED)


if __name__ == "__main__":
    unittest.main()
