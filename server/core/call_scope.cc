#include "server/core/call_scope.h"

#include <utility>

namespace abexp {
namespace {

thread_local const CallScope* current_scope = nullptr;

}  // namespace

CallScope::CallScope(absl::Time deadline, std::function<bool()> cancelled)
    : deadline_(deadline),
      cancelled_(std::move(cancelled)),
      outer_(current_scope) {
  current_scope = this;
}

CallScope::~CallScope() { current_scope = outer_; }

absl::Time CallScope::Deadline() {
  return current_scope == nullptr ? absl::InfiniteFuture()
                                  : current_scope->deadline_;
}

bool CallScope::Cancelled() {
  return current_scope != nullptr && current_scope->cancelled_ &&
         current_scope->cancelled_();
}

}  // namespace abexp
