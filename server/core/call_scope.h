// What storage needs to know about the RPC its thread is working for: when
// the caller stops waiting (the call's deadline) and whether it has already
// given up (cancelled). The service layer opens a CallScope around the work
// of a call that may wait on storage; the storage layer reads it where it
// waits (for a Redis connection, for Redis's answer), so that no such wait
// outlives the call, without every interface in between (Recorder,
// EventStore, the spool) passing a deadline along.
//
//   CallScope scope(deadline, [context] { return context->IsCancelled(); });
//   recorder.RecordEvents(...);  // RedisPool waits until `deadline` at most
//
// Scopes nest; the innermost one counts. Outside any scope there is no
// deadline and nothing is cancelled.
//
// Thread-compatible: a scope belongs to the thread that opened it, and is
// closed on that thread before the thread does anything else.
#ifndef ABEXP_SERVER_CORE_CALL_SCOPE_H_
#define ABEXP_SERVER_CORE_CALL_SCOPE_H_

#include <functional>

#include "absl/time/time.h"

namespace abexp {

class CallScope {
 public:
  // `cancelled` (may be empty: never) says whether the caller has given up;
  // it may be called from this thread only while the scope is open.
  CallScope(absl::Time deadline, std::function<bool()> cancelled);
  ~CallScope();

  CallScope(const CallScope&) = delete;
  CallScope& operator=(const CallScope&) = delete;

  // The innermost open scope's deadline on this thread; InfiniteFuture
  // outside any scope.
  static absl::Time Deadline();

  // Whether the innermost open scope's call was cancelled; false outside
  // any scope.
  static bool Cancelled();

 private:
  const absl::Time deadline_;
  const std::function<bool()> cancelled_;
  const CallScope* const outer_;  // the scope this one nests in, or null
};

}  // namespace abexp

#endif  // ABEXP_SERVER_CORE_CALL_SCOPE_H_
