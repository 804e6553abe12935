// UnaryCall serves one call of a raw callback method (the generated
// WithRawCallbackMethod_<Method>, which hands over the request's bytes).
// It parses the request itself with ParseRequest (rpc_handlers.h), so a
// request that does not parse is answered INVALID_ARGUMENT saying why;
// gRPC's own parse would answer UNIMPLEMENTED with an empty message, which
// clients take for "wrong server". It serializes the response when the call
// finishes.
//
// The request and response live in a protobuf arena that comes with the
// call (one allocation; parsing the request and building the response cost
// no malloc per map entry or submessage, and all is freed at once).
//
//   grpc::ServerUnaryReactor* Service::Method(grpc::CallbackServerContext*,
//       const grpc::ByteBuffer* request, grpc::ByteBuffer* response) {
//     return ServeInline<v1::Req, v1::Resp>(&in_flight_, request, response,
//         [&](const v1::Req& req, v1::Resp* resp) { return Handle(req, resp);
//         });
//   }
//
// Thread safety: Finish may be called from any thread, once: inline, or
// later from a thread that waited for storage.
#ifndef ABEXP_SERVER_SERVICE_UNARY_CALL_H_
#define ABEXP_SERVER_SERVICE_UNARY_CALL_H_

#include <atomic>
#include <exception>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/arena.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/impl/codegen/proto_utils.h"
#include "server/service/rpc_handlers.h"

namespace abexp {

// The one place an absl::Status becomes a grpc::Status: same canonical code,
// same message.
inline grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()),
                      std::string(status.message()));
}

template <typename Request, typename Response>
class UnaryCall final : public grpc::ServerUnaryReactor {
 public:
  // Counts the call in *in_flight until gRPC is done with it; the response
  // is serialized into *response_bytes.
  // REQUIRES: both outlive the call (gRPC keeps response_bytes until
  // OnDone).
  UnaryCall(std::atomic<int>* in_flight, grpc::ByteBuffer* response_bytes)
      : in_flight_(in_flight),
        response_bytes_(response_bytes),
        arena_(ArenaOptionsFor(block_, sizeof(block_))),
        request_(google::protobuf::Arena::CreateMessage<Request>(&arena_)),
        response_(google::protobuf::Arena::CreateMessage<Response>(&arena_)) {
    in_flight_->fetch_add(1);
  }

  UnaryCall(const UnaryCall&) = delete;
  UnaryCall& operator=(const UnaryCall&) = delete;

  // Parses the request. When it does not parse, the call is finished with
  // that INVALID_ARGUMENT, which is returned.
  absl::Status Parse(const grpc::ByteBuffer& request_bytes) {
    absl::Status parsed = ParseRequest(request_bytes, request_);
    if (!parsed.ok()) Finish(parsed);
    return parsed;
  }

  const Request& request() const { return *request_; }
  Response* response() { return response_; }

  // Ends the call: with the response when `status` is OK, else with
  // `status` alone.
  void Finish(const absl::Status& status) {
    if (!status.ok()) {
      grpc::ServerUnaryReactor::Finish(ToGrpcStatus(status));
      return;
    }
    grpc::ByteBuffer bytes;
    bool own_buffer = false;
    grpc::Status serialized = grpc::SerializationTraits<Response>::Serialize(
        *response_, &bytes, &own_buffer);
    if (serialized.ok()) response_bytes_->Swap(&bytes);
    grpc::ServerUnaryReactor::Finish(serialized);
  }

  void OnDone() override {
    in_flight_->fetch_sub(1);
    delete this;
  }

 private:
  static google::protobuf::ArenaOptions ArenaOptionsFor(char* block,
                                                        size_t size) {
    google::protobuf::ArenaOptions options;
    options.initial_block = block;
    options.initial_block_size = size;
    return options;
  }

  std::atomic<int>* const in_flight_;       // not owned
  grpc::ByteBuffer* const response_bytes_;  // not owned
  // An Assign for bench/experiments-50.yaml (11 attributes, 27 features)
  // uses about 7.5 KiB; a larger call spills into blocks the arena mallocs.
  alignas(16) char block_[16384];
  google::protobuf::Arena arena_;  // after block_, which it uses
  Request* const request_;         // on arena_
  Response* const response_;       // on arena_
};

// Serves a call whose work finishes without waiting: parses the request,
// runs fn(request, response) -> absl::Status on the calling thread and
// finishes the call with its result. An exception from fn becomes INTERNAL
// rather than taking the server down.
template <typename Request, typename Response, typename Fn>
grpc::ServerUnaryReactor* ServeInline(std::atomic<int>* in_flight,
                                      const grpc::ByteBuffer* request_bytes,
                                      grpc::ByteBuffer* response_bytes, Fn fn) {
  auto* call = new UnaryCall<Request, Response>(in_flight, response_bytes);
  if (!call->Parse(*request_bytes).ok()) return call;
  absl::Status status;
  try {
    status = fn(call->request(), call->response());
  } catch (const std::exception& e) {
    status = absl::InternalError(absl::StrCat(
        "internal error: ", e.what(), "; please report this with the request"));
  }
  call->Finish(status);
  return call;
}

}  // namespace abexp

#endif  // ABEXP_SERVER_SERVICE_UNARY_CALL_H_
