"""bench/run.sh --only R11 (bench/r11.sh) against the real tools.

It checks that R11 is wired: it starts a real 3-master Redis Cluster and an
abexp-server recording into it, records into every master, prints its two
rows and its notes, and stops every process it started, also when it is
interrupted with Ctrl-C. It checks no figure: the machine may be loaded.

Usage: bench_r11_test.py BUILD_DIR (ctest passes it).
"""
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN = os.path.join(ROOT, "bench", "run.sh")
BUILD = None  # set from argv in main


def env():
    e = dict(os.environ)
    e["ABEXP_BUILD_DIR"] = BUILD
    return e


def listening(address):
    host, port = address.rsplit(":", 1)
    with socket.socket() as s:
        s.settimeout(2)
        try:
            s.connect((host, int(port)))
            return True
        except OSError:
            return False


def started_addresses(log):
    """Every HOST:PORT the bench's log says it started a server on."""
    main = re.search(r"bench: redis (\S+), abexp-server (\S+), echo (\S+);", log)
    r11 = re.search(r"bench: R11: cluster (\S+) \(3 masters, no replicas\), "
                    r"abexp-server (\S+) on it", log)
    if not main or not r11:
        return None
    return list(main.groups()) + r11.group(1).split(",") + [r11.group(2)]


def wait_until_closed(addresses, timeout_s):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        still = [a for a in addresses if listening(a)]
        if not still:
            return []
        time.sleep(0.2)
    return still


class BenchR11(unittest.TestCase):
    def test_smoke_prints_both_rows_records_on_every_master_and_stops_all(self):
        p = subprocess.run([RUN, "--smoke", "--only", "R11"], env=env(),
                           capture_output=True, text=True, timeout=600)
        self.assertEqual(p.returncode, 0, p.stderr)
        rows = [l for l in p.stdout.splitlines() if l.startswith("| R11 |")]
        self.assertEqual(len(rows), 2, p.stdout)
        throughput, cpu = (r.split(" | ") for r in rows)
        self.assertIn("recorded items/s", throughput[1])
        self.assertIn("Redis CPU per recorded item", cpu[1])
        self.assertGreater(float(throughput[3]), 0, rows)
        self.assertGreater(float(cpu[3]), 0, rows)
        self.assertEqual(cpu[4], "<= 1.2")
        self.assertIn(cpu[5].rstrip(" |"), ("met", "**missed**"))
        # The experiment's 16 shards put keys on every master: the cluster
        # being measured is one where every master works.
        masters = re.search(r"R11 cluster masters: share of the cluster's "
                            r"Redis CPU (\S+), (\S+), (\S+); keys (\d+), "
                            r"(\d+), (\d+)\.", p.stdout)
        self.assertIsNotNone(masters, p.stdout)
        for keys in masters.groups()[3:]:
            self.assertGreater(int(keys), 0, masters.group(0))
        self.assertIn("R11 records spooled", p.stdout)
        addresses = started_addresses(p.stderr)
        self.assertIsNotNone(addresses, p.stderr)
        self.assertEqual(wait_until_closed(addresses, 10), [])

    def test_ctrl_c_stops_the_cluster_and_every_server(self):
        with tempfile.TemporaryFile(mode="w+") as err:
            # Its own process group, so the SIGINT below reaches what a
            # terminal's Ctrl-C reaches and nothing else.
            p = subprocess.Popen(
                [RUN, "--only", "R11", "--rounds", "1", "--duration", "300"],
                env=env(), stdout=subprocess.DEVNULL, stderr=err,
                start_new_session=True)
            try:
                deadline = time.monotonic() + 300
                addresses = None
                while addresses is None and time.monotonic() < deadline:
                    self.assertIsNone(p.poll(), "run.sh exited early")
                    err.seek(0)
                    log = err.read()
                    addresses = started_addresses(log)
                    time.sleep(0.2)
                self.assertIsNotNone(addresses, "R11's servers never started")
                for a in addresses:
                    self.assertTrue(listening(a), a)
                os.killpg(p.pid, signal.SIGINT)
                p.wait(timeout=120)
                self.assertNotEqual(p.returncode, 0)
                self.assertEqual(wait_until_closed(addresses, 10), [])
            finally:
                if p.poll() is None:
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait()


if __name__ == "__main__":
    BUILD = sys.argv.pop(1)
    unittest.main()
