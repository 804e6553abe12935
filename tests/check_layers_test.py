"""scripts/check-layers.py: the repository keeps its layering, and the check
fails, naming file and line, on each kind of include that breaks it."""
import os
import subprocess
import sys
import tempfile
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHECK = os.path.join(ROOT, "scripts", "check-layers.py")


def run(root):
    return subprocess.run([sys.executable, CHECK, root], capture_output=True, text=True)


class CheckLayersTest(unittest.TestCase):
    def tree(self, files):
        d = tempfile.TemporaryDirectory()
        self.addCleanup(d.cleanup)
        for path, text in files.items():
            full = os.path.join(d.name, path)
            os.makedirs(os.path.dirname(full), exist_ok=True)
            with open(full, "w", encoding="utf-8") as f:
                f.write(text)
        return d.name

    def assert_refused(self, files, where, words):
        r = run(self.tree(files))
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn(where, r.stderr)
        self.assertIn(words, r.stderr)

    def test_the_repository_keeps_its_layers(self):
        r = run(ROOT)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("every include points down", r.stdout)

    def test_a_clean_tree_passes(self):
        r = run(self.tree({
            "server/core/a.h": '#include "stats/srm.h"\n#include <string>\n',
            "server/storage/redis/s.cc": '#include "server/core/a.h"\n#include <hiredis/hiredis.h>\n'
                                         '#include "abexp/internal/spool.pb.h"\n',
            "server/service/x.cc": '#include "server/core/a.h"\n#include "grpcpp/grpcpp.h"\n'
                                   '#include "server/metrics/metrics.h"\n',
            "server/metrics/metrics.h": '#include "server/core/a.h"\n#include "prometheus/counter.h"\n',
            "server/main.cc": '#include "server/storage/redis/s.h"\n#include "server/service/x.h"\n',
            "server/core/a_test.cc": '#include "server/testing/fake.h"\n#include "gtest/gtest.h"\n',
            "server/testing/fake.cc": '#include "gtest/gtest.h"\n',
        }))
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_core_including_grpc_protobuf_or_hiredis_fails(self):
        for header in ('<grpcpp/grpcpp.h>', '"abexp/v1/assignment.pb.h"',
                       '"google/protobuf/message.h"', '<hiredis/hiredis.h>',
                       '<hiredis/async.h>', '<event2/event.h>'):
            with self.subTest(header=header):
                self.assert_refused(
                    {"server/core/a.cc": f"#include <vector>\n#include {header}\n"},
                    "server/core/a.cc:2:", "core must not depend on")

    def test_core_including_a_layer_above_fails(self):
        for header in ('"server/service/x.h"', '"server/storage/redis/s.h"',
                       '"server/server_setup.h"'):
            with self.subTest(header=header):
                self.assert_refused({"server/core/a.h": f"#include {header}\n"},
                                    "server/core/a.h:1:", "a layer above the core")

    def test_storage_including_grpc_or_service_fails(self):
        self.assert_refused({"server/storage/spool/s.cc": '#include "grpcpp/grpcpp.h"\n'},
                            "server/storage/spool/s.cc:1:", "storage must not depend on gRPC")
        self.assert_refused({"server/storage/s.cc": '#include "server/service/x.h"\n'},
                            "server/storage/s.cc:1:", "a layer above storage")

    def test_metrics_including_grpc_or_a_layer_above_fails(self):
        self.assert_refused({"server/metrics/m.cc": '#include "grpcpp/grpcpp.h"\n'},
                            "server/metrics/m.cc:1:", "metrics must not depend on gRPC")
        for header in ('"server/service/x.h"', '"server/storage/redis/s.h"',
                       '"server/operator_endpoints.h"'):
            with self.subTest(header=header):
                self.assert_refused({"server/metrics/m.h": f"#include {header}\n"},
                                    "server/metrics/m.h:1:", "a layer above metrics")

    def test_core_including_metrics_fails(self):
        self.assert_refused({"server/core/a.cc": '#include "server/metrics/metrics.h"\n'},
                            "server/core/a.cc:1:", "a layer above the core")

    def test_service_including_storage_fails(self):
        self.assert_refused({"server/service/x.cc": '#include "server/storage/redis/s.h"\n'},
                            "server/service/x.cc:1:", "service must not depend on storage")

    def test_ofrep_including_grpc_service_or_the_process_fails(self):
        for header in ('"grpcpp/grpcpp.h"', '"abexp/v1/assignment.pb.h"',
                       '"server/service/x.h"', '"server/storage/redis/s.h"',
                       '"server/http_listener.h"', '<httplib.h>'):
            self.assert_refused({"server/ofrep/o.cc": f"#include {header}\n"},
                                "server/ofrep/o.cc:1:", "ofrep must not depend on")
        r = run(self.tree({"server/ofrep/o.cc":
                           '#include "server/core/a.h"\n#include "server/http/h.h"\n'
                           '#include "server/metrics/m.h"\n#include <nlohmann/json.hpp>\n'}))
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_http_including_a_layer_above_the_core_fails(self):
        for header in ('"server/ofrep/o.h"', '"server/service/x.h"',
                       '"server/metrics/m.h"', '"grpcpp/grpcpp.h"', '<httplib.h>'):
            self.assert_refused({"server/http/h.cc": f"#include {header}\n"},
                                "server/http/h.cc:1:", "http must not depend on")

    def test_stats_including_server_code_fails(self):
        self.assert_refused({"stats/srm.cc": '#include "server/core/config.h"\n'},
                            "stats/srm.cc:1:", "stats must not depend on server or client code")

    def test_production_code_including_a_testing_header_fails(self):
        for path in ("server/main.cc", "server/core/recorder.cc",
                     "server/service/x.cc", "client/cli/main.cc", "stats/srm.h"):
            for header in ('"server/testing/memory_event_store.h"',
                           '"tests/recording_test_util.h"', '"stats/testing/golden.h"',
                           '"gtest/gtest.h"'):
                with self.subTest(path=path, header=header):
                    self.assert_refused({path: f"#include {header}\n"},
                                        f"{path}:1:", "includes a testing header")

    def test_an_empty_root_is_an_error_not_a_pass(self):
        r = run(self.tree({"README.md": "x\n"}))
        self.assertEqual(r.returncode, 1)
        self.assertIn("no sources", r.stderr)


if __name__ == "__main__":
    unittest.main()
