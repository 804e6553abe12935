// Serving one call of a raw callback method (the generated
// WithRawCallbackMethod_<Method>, which hands over the request's bytes).
// The call parses the request itself with ParseRequest (rpc_handlers.h), so a
// request that does not parse is answered INVALID_ARGUMENT saying why;
// gRPC's own parse would answer UNIMPLEMENTED with an empty message, which
// clients take for "wrong server". It serializes the response when the call
// finishes.
//
// The request and response live in a protobuf arena (parsing the request
// and building the response cost no malloc per map entry or submessage, and
// all is freed at once). A call that finishes before its method returns
// keeps them in a per-thread block (ScopedMessages) and ends with the
// context's default reactor; only a call that outlives its method (one
// that waits on storage) gets a UnaryCall, its own heap arena and reactor.
//
//   grpc::ServerUnaryReactor* Service::Method(grpc::CallbackServerContext*,
//       const grpc::ByteBuffer* request, grpc::ByteBuffer* response) {
//     return ServeInline<v1::Req, v1::Resp>(
//         context, access, &in_flight_, request, response,
//         [&](const v1::Req& req, v1::Resp* resp) { return Handle(req, resp);
//         });
//   }
//
// Every call starts with its caller's check (RpcAccess, call_auth.h), before
// its request is parsed: a call its token does not allow does nothing.
//
// Thread safety: Finish may be called from any thread, once: inline, or
// later from a thread that waited for storage.
#ifndef ABEXP_SERVER_SERVICE_UNARY_CALL_H_
#define ABEXP_SERVER_SERVICE_UNARY_CALL_H_

#include <atomic>
#include <chrono>
#include <exception>
#include <string>
#include <utility>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "google/protobuf/arena.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/impl/codegen/proto_utils.h"
#include "server/core/call_scope.h"
#include "server/service/call_auth.h"
#include "server/service/rpc_handlers.h"
#include "server/service/storage_executor.h"

namespace abexp {

// The one place an absl::Status becomes a grpc::Status: same canonical code,
// same message.
inline grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()),
                      std::string(status.message()));
}

// Serializes `response` into *bytes; returns how the call should end (OK, or
// INTERNAL when it does not serialize).
template <typename Response>
grpc::Status SerializeResponse(const Response& response,
                               grpc::ByteBuffer* bytes) {
  grpc::ByteBuffer serialized;
  bool own_buffer = false;
  grpc::Status status = grpc::SerializationTraits<Response>::Serialize(
      response, &serialized, &own_buffer);
  if (status.ok()) bytes->Swap(&serialized);
  return status;
}

inline google::protobuf::ArenaOptions ArenaOptionsFor(char* block,
                                                      size_t size) {
  google::protobuf::ArenaOptions options;
  options.initial_block = block;
  options.initial_block_size = size;
  return options;
}

// The first arena block of a call's messages. An Assign for
// bench/experiments-50.yaml (11 attributes, 27 features) uses about 7.5 KiB;
// a larger call spills into blocks the arena mallocs.
inline constexpr size_t kCallArenaBlockSize = 16384;

// The serving thread's first arena block for ScopedMessages, one per thread
// for every method's calls: a thread's calls never nest.
inline char* CallArenaThreadBlock() {
  alignas(16) static thread_local char block[kCallArenaBlockSize];
  return block;
}

// The request and response of a call served within the method that
// received it (ServeInline, and ServeOnExecutorIf's calls that do not wait),
// in an arena whose first block belongs to the serving thread: such a call
// mallocs nothing for its messages, and needs no reactor of its own.
// REQUIRES: at most one alive per thread at a time (handlers never nest).
template <typename Request, typename Response>
class ScopedMessages {
 public:
  ScopedMessages()
      : arena_(ArenaOptionsFor(CallArenaThreadBlock(), kCallArenaBlockSize)),
        request_(google::protobuf::Arena::CreateMessage<Request>(&arena_)),
        response_(google::protobuf::Arena::CreateMessage<Response>(&arena_)) {}
  ScopedMessages(const ScopedMessages&) = delete;
  ScopedMessages& operator=(const ScopedMessages&) = delete;

  Request* request() { return request_; }
  Response* response() { return response_; }

 private:
  google::protobuf::Arena arena_;
  Request* const request_;    // on arena_
  Response* const response_;  // on arena_
};

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
    grpc::ServerUnaryReactor::Finish(
        SerializeResponse(*response_, response_bytes_));
  }

  void OnDone() override {
    in_flight_->fetch_sub(1);
    delete this;
  }

 private:
  std::atomic<int>* const in_flight_;       // not owned
  grpc::ByteBuffer* const response_bytes_;  // not owned
  alignas(16) char block_[kCallArenaBlockSize];
  google::protobuf::Arena arena_;  // after block_, which it uses
  Request* const request_;         // on arena_
  Response* const response_;       // on arena_
};

// fn(request, response) -> absl::Status, with an exception from fn turned
// into INTERNAL rather than taking the server down.
template <typename Request, typename Response, typename Fn>
absl::Status RunHandler(Fn& fn, const Request& request, Response* response) {
  try {
    return fn(request, response);
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat(
        "internal error: ", e.what(), "; please report this with the request"));
  }
}

// Why a call that was to wait on storage is not started, or OK to start it:
// CANCELLED when the client cancelled it, DEADLINE_EXCEEDED when its
// deadline has passed.
inline absl::Status CheckStillWanted(grpc::CallbackServerContext* context) {
  if (context->IsCancelled()) {
    return absl::CancelledError(
        "the call was cancelled before abexp-server started it; nothing of "
        "it was done");
  }
  if (context->deadline() <= std::chrono::system_clock::now()) {
    return absl::DeadlineExceededError(
        "the call's deadline passed before abexp-server could start it "
        "(storage was busy); nothing of it was done, so it is safe to retry "
        "with a longer deadline");
  }
  return absl::OkStatus();
}

// RESOURCE_EXHAUSTED for a call refused because `executor` is full.
inline absl::Status StorageBusyError(const StorageExecutor& executor) {
  return absl::ResourceExhaustedError(absl::StrCat(
      "abexp-server already has ", executor.options().max_calls,
      " calls waiting for storage (--storage_max_calls); nothing of this "
      "call was done: retry it after a backoff (e.g. 100 ms, doubling), "
      "with the same idempotency keys"));
}

// Runs fn(request, response) -> absl::Status for `call` on `executor` and
// finishes the call from there with its result, or with CheckStillWanted's
// error, without running fn, when by the time a thread takes it the client
// has cancelled it or its deadline has passed. fn runs in a CallScope with
// the call's deadline and cancellation, so storage stops waiting when the
// client does. Returns false, with the call neither run nor finished, when
// the executor is full. With a positive `delay`, the call starts once that
// has passed (StorageExecutor::TrySubmitReleasingAfter).
// REQUIRES: fn may be copied, and whatever it refers to outlives the call.
template <typename Request, typename Response, typename Fn>
bool TrySubmitCall(StorageExecutor* executor,
                   grpc::CallbackServerContext* context,
                   UnaryCall<Request, Response>* call, Fn fn,
                   absl::Duration delay = absl::ZeroDuration()) {
  return executor->TrySubmitReleasingAfter(
      delay, [call, context, fn](absl::FunctionRef<void()> release) mutable {
        absl::Status status = CheckStillWanted(context);
        if (status.ok()) {
          CallScope scope(absl::FromChrono(context->deadline()),
                          [context] { return context->IsCancelled(); });
          status = RunHandler(fn, call->request(), call->response());
        }
        release();
        call->Finish(status);
      });
}

// How every call starts: the caller's check, the parse of the request into
// *request, the check of the request's own roles. Returns the first
// failure, with which the call ends.
template <typename Request>
absl::Status AdmitAndParse(grpc::CallbackServerContext* context,
                           const RpcAccess<Request>& access,
                           const grpc::ByteBuffer& request_bytes,
                           Request* request) {
  absl::Status status = access.CheckCaller(*context);
  if (status.ok()) status = ParseRequest(request_bytes, request);
  if (status.ok()) status = access.CheckRequest(*context, *request);
  return status;
}

// Serves the call within this method unless it is to wait on storage:
// checks the caller and parses the request into ScopedMessages
// (AdmitAndParse); when that fails, or waits_on_storage(request) is false, runs
// fn(request, response) -> absl::Status, finishes the call with the result and
// returns the reactor. Returns null, having kept nothing, for a call that is to
// wait.
//
// Such a call ends with the context's default reactor: gRPC runs its
// OnDone inline, where one of ours would be handed to gRPC's executor
// thread, a thread switch per call. It counts in *in_flight while fn runs;
// gRPC sends the answer after, within ShutdownServer's quiet period.
template <typename Request, typename Response, typename Pred, typename Fn>
grpc::ServerUnaryReactor* ServeNowUnless(grpc::CallbackServerContext* context,
                                         const RpcAccess<Request>& access,
                                         std::atomic<int>* in_flight,
                                         const grpc::ByteBuffer* request_bytes,
                                         grpc::ByteBuffer* response_bytes,
                                         Pred waits_on_storage, Fn& fn) {
  grpc::Status finish;
  {
    ScopedMessages<Request, Response> messages;
    absl::Status status =
        AdmitAndParse(context, access, *request_bytes, messages.request());
    if (status.ok() && waits_on_storage(*messages.request())) return nullptr;
    in_flight->fetch_add(1);
    if (status.ok()) {
      status = RunHandler(fn, *messages.request(), messages.response());
    }
    finish = status.ok()
                 ? SerializeResponse(*messages.response(), response_bytes)
                 : ToGrpcStatus(status);
    in_flight->fetch_sub(1);
  }
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(finish);
  return reactor;
}

// ServeNowUnless for a method that writes its response's encoding itself:
// fn(request, std::string* response_bytes) -> absl::Status. The bytes go
// to gRPC as they are.
template <typename Request, typename Pred, typename Fn>
grpc::ServerUnaryReactor* ServeEncodedNowUnless(
    grpc::CallbackServerContext* context, const RpcAccess<Request>& access,
    std::atomic<int>* in_flight, const grpc::ByteBuffer* request_bytes,
    grpc::ByteBuffer* response_bytes, Pred waits_on_storage, Fn& fn) {
  // Reused by the thread's calls: its capacity is kept.
  thread_local std::string encoded;
  grpc::Status finish;
  {
    ScopedMessages<Request, Request> messages;  // the second one unused
    absl::Status status =
        AdmitAndParse(context, access, *request_bytes, messages.request());
    if (status.ok() && waits_on_storage(*messages.request())) return nullptr;
    in_flight->fetch_add(1);
    encoded.clear();
    if (status.ok()) status = RunHandler(fn, *messages.request(), &encoded);
    if (status.ok()) {
      grpc::Slice slice(encoded.data(), encoded.size());
      grpc::ByteBuffer bytes(&slice, 1);
      response_bytes->Swap(&bytes);
    } else {
      finish = ToGrpcStatus(status);
    }
    in_flight->fetch_sub(1);
  }
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(finish);
  return reactor;
}

// Serves a call whose work finishes without waiting: parses the request,
// runs fn(request, response) -> absl::Status on the calling thread and
// finishes the call with its result (ServeNowUnless).
template <typename Request, typename Response, typename Fn>
grpc::ServerUnaryReactor* ServeInline(grpc::CallbackServerContext* context,
                                      const RpcAccess<Request>& access,
                                      std::atomic<int>* in_flight,
                                      const grpc::ByteBuffer* request_bytes,
                                      grpc::ByteBuffer* response_bytes, Fn fn) {
  return ServeNowUnless<Request, Response>(
      context, access, in_flight, request_bytes, response_bytes,
      [](const Request&) { return false; }, fn);
}

// Serves a call on the calling thread or on `executor`: parses the request
// (ServeNowUnless); when waits_on_storage(request) is false, runs
// inline_fn(request, response) -> absl::Status and finishes the call with its
// result; otherwise runs fn(request, response) -> absl::Status on
// `executor` and finishes the call from there, so the gRPC thread never
// waits. A call for the executor is not started (and nothing of it done)
// when the executor is full (RESOURCE_EXHAUSTED), or when by the time a
// thread takes it the client has cancelled it or its deadline has passed
// (CheckStillWanted). The call for the executor starts after `delay`
// (read once waits_on_storage has run, which may set it).
// REQUIRES: fn may be copied, and whatever it refers to outlives the call.
template <typename Request, typename Response, typename Pred, typename InlineFn,
          typename Fn>
grpc::ServerUnaryReactor* ServeHereOrOnExecutor(
    StorageExecutor* executor, grpc::CallbackServerContext* context,
    const RpcAccess<Request>& access, std::atomic<int>* in_flight,
    const grpc::ByteBuffer* request_bytes, grpc::ByteBuffer* response_bytes,
    Pred waits_on_storage, InlineFn& inline_fn, Fn fn,
    const absl::Duration& delay = absl::ZeroDuration()) {
  if (grpc::ServerUnaryReactor* served = ServeNowUnless<Request, Response>(
          context, access, in_flight, request_bytes, response_bytes,
          waits_on_storage, inline_fn)) {
    return served;
  }
  // The call outlives this method: its messages move to an arena of its own
  // (parsed again: a call that waits on storage can afford it; its caller
  // was admitted above).
  auto* call = new UnaryCall<Request, Response>(in_flight, response_bytes);
  if (!call->Parse(*request_bytes).ok()) return call;
  if (absl::Status wanted = CheckStillWanted(context); !wanted.ok()) {
    call->Finish(wanted);
    return call;
  }
  if (!TrySubmitCall(executor, context, call, std::move(fn), delay)) {
    call->Finish(StorageBusyError(*executor));
  }
  return call;
}

// Serves a call whose work may wait on storage: ServeHereOrOnExecutor with
// fn for both, so fn runs on `executor` when waits_on_storage(request) says
// so, and inline otherwise.
// REQUIRES: fn may be copied, and whatever it refers to outlives the call.
template <typename Request, typename Response, typename Pred, typename Fn>
grpc::ServerUnaryReactor* ServeOnExecutorIf(
    StorageExecutor* executor, grpc::CallbackServerContext* context,
    const RpcAccess<Request>& access, std::atomic<int>* in_flight,
    const grpc::ByteBuffer* request_bytes, grpc::ByteBuffer* response_bytes,
    Pred waits_on_storage, Fn fn) {
  return ServeHereOrOnExecutor<Request, Response>(
      executor, context, access, in_flight, request_bytes, response_bytes,
      waits_on_storage, fn, fn);
}

// Serves a call that always waits on storage, once admit(request) ->
// absl::StatusOr<absl::Duration> allows it: admit runs on the calling thread
// after the request is parsed, and a call it refuses ends there with its
// status, nothing else done (a refusal costs no thread switch and no storage
// slot); an admitted call runs fn on `executor` (ServeHereOrOnExecutor),
// starting once admit's duration has passed (zero: at once; the call holds
// its storage slot meanwhile, and no thread). admit may add trailing
// metadata to `context`.
// REQUIRES: fn may be copied, and whatever it refers to outlives the call.
template <typename Request, typename Response, typename Admit, typename Fn>
grpc::ServerUnaryReactor* ServeOnExecutorIfAdmitted(
    StorageExecutor* executor, grpc::CallbackServerContext* context,
    const RpcAccess<Request>& access, std::atomic<int>* in_flight,
    const grpc::ByteBuffer* request_bytes, grpc::ByteBuffer* response_bytes,
    Admit admit, Fn fn) {
  absl::Status refused;
  absl::Duration delay;
  auto refuse = [&refused](const Request&, Response*) { return refused; };
  return ServeHereOrOnExecutor<Request, Response>(
      executor, context, access, in_flight, request_bytes, response_bytes,
      [&](const Request& request) {
        absl::StatusOr<absl::Duration> admitted = admit(request);
        if (!admitted.ok()) {
          refused = admitted.status();
          return false;
        }
        delay = *admitted;
        return true;
      },
      refuse, std::move(fn), delay);
}

// ServeOnExecutorIf for a call that always waits on storage.
template <typename Request, typename Response, typename Fn>
grpc::ServerUnaryReactor* ServeOnExecutor(StorageExecutor* executor,
                                          grpc::CallbackServerContext* context,
                                          const RpcAccess<Request>& access,
                                          std::atomic<int>* in_flight,
                                          const grpc::ByteBuffer* request_bytes,
                                          grpc::ByteBuffer* response_bytes,
                                          Fn fn) {
  return ServeOnExecutorIf<Request, Response>(
      executor, context, access, in_flight, request_bytes, response_bytes,
      [](const Request&) { return true; }, std::move(fn));
}

}  // namespace abexp

#endif  // ABEXP_SERVER_SERVICE_UNARY_CALL_H_
