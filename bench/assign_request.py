#!/usr/bin/env python3
"""Writes one gRPC-framed abexp.v1.AssignRequest for bench/h2load.sh, and
checks that a server answers those bytes with gRPC status OK.

h2load sends the same request body on every stream and only sees HTTP
statuses, so bench/h2load.sh needs the body (a 5-byte gRPC message prefix,
then the serialized message) and one real gRPC call to know the server
accepts it:

    python3 bench/assign_request.py --out FILE
    python3 bench/assign_request.py --out FILE --check HOST:PORT

The request is a unit as a page view sends it to bench/experiments-50.yaml:
user and device ids and the 11 attributes that config declares, with values
its targeting rules match. The message classes are generated into a
temporary directory with protoc (--protoc, default /usr/bin/protoc); --check
needs python3-grpcio.
"""

import argparse
import importlib
import os
import struct
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_messages(protoc, out_dir):
    """Generates abexp/v1/assignment_pb2.py into out_dir and imports it."""
    subprocess.run(
        [protoc, "-I", os.path.join(ROOT, "proto"), "--python_out", out_dir,
         "abexp/v1/assignment.proto"],
        check=True)
    sys.path.insert(0, out_dir)
    return importlib.import_module("abexp.v1.assignment_pb2")


def build_request(pb):
    request = pb.AssignRequest()
    unit = request.unit
    # abexp-server answers this unit with 1,197 bytes, the size of
    # abexp-echo-server's canned answer and of the average answer to
    # abexp-loadgen's units (units with more assignments get up to 1.5 KB).
    unit.ids["user_id"] = "u-5f3a9c0d12e591ed"
    unit.ids["device_id"] = "d-a0c4e19b7d3d9a37"
    strings = {
        "country": "US",
        "platform": "ios",
        "app_version": "5.4.2",
        "locale": "en-US",
        "acquisition_channel": "paid_search",
        "membership_tier": "silver",
        "rfm_tier": "loyal",
    }
    for name, value in strings.items():
        unit.attributes[name].string_value = value
    numbers = {
        "days_since_signup": 142,
        "days_since_last_active": 3,
        "orders_last_90d": 2,
    }
    for name, value in numbers.items():
        unit.attributes[name].number_value = value
    unit.attributes["is_vip"].bool_value = False
    return request


def check(address, message, pb):
    """One real gRPC call with `message` (serialized bytes); exits 1 unless
    the answer is OK and parses as an AssignResponse."""
    import grpc  # python3-grpcio

    with grpc.insecure_channel(address) as channel:
        call = channel.unary_unary("/abexp.v1.AssignmentService/Assign")
        try:
            answer = call(message, timeout=10)
        except grpc.RpcError as e:
            sys.exit(f"assign_request.py: {address} answered {e.code().name}: "
                     f"{e.details()}")
    response = pb.AssignResponse.FromString(answer)
    print(f"{address}: OK, {len(answer)} response bytes, "
          f"{len(response.assignments)} assignments, "
          f"{len(response.features)} features")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True,
                        help="file for the gRPC-framed request")
    parser.add_argument("--check", action="append", default=[],
                        metavar="HOST:PORT",
                        help="send the request to this server and require OK "
                             "(repeatable)")
    parser.add_argument("--protoc", default="/usr/bin/protoc")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as gen:
        pb = load_messages(args.protoc, gen)
        message = build_request(pb).SerializeToString()
        with open(args.out, "wb") as f:
            # gRPC framing: not compressed (0), then the length, big-endian.
            f.write(struct.pack(">BI", 0, len(message)) + message)
        print(f"{args.out}: AssignRequest of {len(message)} bytes "
              f"({len(message) + 5} framed)")
        for address in args.check:
            check(address, message, pb)


if __name__ == "__main__":
    main()
