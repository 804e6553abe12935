// Fuzzes what every abexp RPC does with a request's bytes (server/
// rpc_handlers.h): the parse, the proto -> core conversion, validation and
// the core call, against examples/experiments.yaml and an in-memory event
// store.
//
// Input: one byte that picks the RPC (modulo the eight methods), then the
// request's protobuf bytes. Properties, for any input:
//  - no crash, leak or undefined behaviour (the sanitizers);
//  - a refused request is refused with a code a client can act on
//    (INVALID_ARGUMENT, NOT_FOUND, FAILED_PRECONDITION, RESOURCE_EXHAUSTED),
//    never INTERNAL, UNKNOWN or UNIMPLEMENTED, and its message is short
//    (request strings are quoted clipped) and valid UTF-8;
//  - an answered request's response serializes to bytes that parse back
//    (so it holds no string a client would fail to decode).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include "abexp/v1/assignment.pb.h"
#include "abexp/v1/recording.pb.h"
#include "abexp/v1/results.pb.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/message.h"
#include "google/protobuf/stubs/common.h"
#include "grpc/grpc.h"
#include "grpcpp/support/byte_buffer.h"
#include "grpcpp/support/slice.h"
#include "server/core/config_store.h"
#include "server/core/recorder.h"
#include "server/service/rpc_handlers.h"
#include "server/testing/memory_event_store.h"
#include "tests/fuzz/fuzz_check.h"

namespace abexp {
namespace {

// The longest status message a handler may send: gRPC clients refuse
// metadata from about 4 KiB (issue 12, item 5).
constexpr size_t kMaxMessageBytes = 2048;

void Check(bool ok, const char* what, const std::string& detail = "") {
  FuzzCheck(ok, "rpc_requests_fuzz", what, detail.c_str());
}

// What the handlers run against. The event store starts afresh every
// kCallsPerStore calls, so that what the fuzzer records cannot grow without
// bound over a long run.
constexpr int kCallsPerStore = 4096;

struct Server {
  std::unique_ptr<ConfigStore> config;
  std::unique_ptr<MemoryEventStore> events;
  std::unique_ptr<Recorder> recorder;
  int calls = 0;

  void Renew() {
    recorder.reset();
    events = std::make_unique<MemoryEventStore>();
    recorder = std::make_unique<Recorder>(events.get());
    calls = 0;
  }
};

Server& TheServer() {
  static Server* server = [] {
    grpc_init();
    auto* s = new Server();
    const std::string path =
        std::string(ABEXP_SOURCE_DIR) + "/examples/experiments.yaml";
    absl::StatusOr<std::unique_ptr<ConfigStore>> store =
        ConfigStore::Open(path);
    if (!store.ok()) {
      fprintf(stderr, "rpc_requests_fuzz: %s: %s\n", path.c_str(),
              std::string(store.status().message()).c_str());
      abort();
    }
    s->config = *std::move(store);
    s->Renew();
    return s;
  }();
  return *server;
}

// Parses `bytes` as Request and, when that succeeds, runs `handle` on it.
template <typename Request, typename Response, typename Handle>
void Run(const uint8_t* data, size_t size, Handle handle) {
  grpc::Slice slice(data, size);
  grpc::ByteBuffer bytes(&slice, 1);
  Request request;
  absl::Status status = ParseRequest(bytes, &request);
  Response response;
  if (status.ok()) status = handle(request, &response);

  const std::string message(status.message());
  Check(message.size() <= kMaxMessageBytes, "status message too long",
        absl::StrCat(message.size(), " bytes"));
  Check(google::protobuf::internal::IsStructurallyValidUTF8(
            message.data(), static_cast<int>(message.size())),
        "status message is not UTF-8");
  if (!status.ok()) {
    const absl::StatusCode code = status.code();
    Check(code == absl::StatusCode::kInvalidArgument ||
              code == absl::StatusCode::kNotFound ||
              code == absl::StatusCode::kFailedPrecondition ||
              code == absl::StatusCode::kResourceExhausted,
          "a request was refused with a code clients cannot act on",
          status.ToString());
    return;
  }
  std::string wire;
  Check(response.SerializeToString(&wire), "response does not serialize");
  Response back;
  Check(back.ParseFromString(wire),
        "response bytes do not parse back (invalid UTF-8?)",
        response.ShortDebugString().substr(0, 512));
}

}  // namespace
}  // namespace abexp

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace abexp;
  if (size == 0) return 0;
  Server& s = TheServer();
  if (++s.calls > kCallsPerStore) s.Renew();
  const uint8_t method = data[0] % 8;
  ++data;
  --size;
  switch (method) {
    case 0:
      Run<v1::AssignRequest, v1::AssignResponse>(
          data, size, [&](const auto& req, auto* resp) {
            return HandleAssign(*s.config->Snapshot(), s.recorder.get(),
                                StickyRead{}, req, resp);
          });
      break;
    case 1:
      Run<v1::BatchAssignRequest, v1::BatchAssignResponse>(
          data, size, [&](const auto& req, auto* resp) {
            return HandleBatchAssign(*s.config->Snapshot(), StickyRead{}, req,
                                     resp);
          });
      break;
    case 2:
      Run<v1::ExplainAssignmentRequest, v1::ExplainAssignmentResponse>(
          data, size, [&](const auto& req, auto* resp) {
            return HandleExplainAssignment(*s.config->Snapshot(), StickyRead{},
                                           req, resp);
          });
      break;
    case 3:
      Run<v1::ListExperimentsRequest, v1::ListExperimentsResponse>(
          data, size, [&](const auto& req, auto* resp) {
            return HandleListExperiments(*s.config, req, resp);
          });
      break;
    case 4:
      Run<v1::GetExperimentRequest, v1::Experiment>(
          data, size, [&](const auto& req, auto* resp) {
            return HandleGetExperiment(*s.config, req, resp);
          });
      break;
    case 5:
      Run<v1::RecordExposuresRequest, v1::RecordExposuresResponse>(
          data, size, [&](const auto& req, auto* resp) {
            return HandleRecordExposures(*s.config, *s.recorder, req, resp);
          });
      break;
    case 6:
      Run<v1::RecordEventsRequest, v1::RecordEventsResponse>(
          data, size, [&](const auto& req, auto* resp) {
            return HandleRecordEvents(*s.config, *s.recorder, req, resp);
          });
      break;
    case 7:
      Run<v1::GetResultsRequest, v1::GetResultsResponse>(
          data, size, [&](const auto& req, auto* resp) {
            return HandleGetResults(*s.config, s.events.get(), req, resp);
          });
      break;
  }
  return 0;
}
