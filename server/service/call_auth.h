// Who may make which call: the bearer token a call carries (gRPC metadata
// "authorization: Bearer abexp_...") checked against the server's token
// table (server/core/token_table.h) for the roles the RPC needs. Every RPC
// checks where its call starts (unary_call.h's ServeNowUnless, the
// reflection stream's reactor), before any other work. The gRPC health
// service is not checked.
//
// Thread-safe: Check may be called concurrently.
#ifndef ABEXP_SERVER_SERVICE_CALL_AUTH_H_
#define ABEXP_SERVER_SERVICE_CALL_AUTH_H_

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "grpcpp/grpcpp.h"
#include "server/core/token_store.h"
#include "server/core/token_table.h"

namespace abexp {

class CallAuthorizer {
 public:
  // Checks calls against `tokens`' table in force; null: every call is
  // allowed (abexp-server without --auth_tokens_file).
  // REQUIRES: tokens outlives this authorizer.
  explicit CallAuthorizer(const TokenStore* tokens) : tokens_(tokens) {}

  CallAuthorizer(const CallAuthorizer&) = delete;
  CallAuthorizer& operator=(const CallAuthorizer&) = delete;

  // OK when the call's token has every role in `needed` (or tokens are
  // off); else UNAUTHENTICATED or PERMISSION_DENIED as TokenTable::Check
  // says, naming `rpc` ("abexp.v1.AssignmentService/Assign").
  absl::Status Check(const grpc::ServerContextBase& context, Roles needed,
                     absl::string_view rpc) const;

  bool enabled() const { return tokens_ != nullptr; }

 private:
  const TokenStore* const tokens_;  // not owned; may be null
};

// Who may make one unary RPC: checked by ServeNowUnless (unary_call.h)
// before its request is parsed, and once parsed for the roles some
// requests need beyond the RPC's.
template <typename Request>
struct RpcAccess {
  // Null: every call is allowed.
  const CallAuthorizer* authorizer = nullptr;
  // The RPC's full name, for messages: "abexp.v1.AssignmentService/Assign".
  const char* rpc = "";
  // The roles every call of the RPC needs.
  Roles roles = 0;
  // The roles a request needs beyond `roles` (Assign with record_exposure:
  // record); null: none.
  Roles (*request_roles)(const Request&) = nullptr;

  // Whether the caller may call the RPC at all.
  absl::Status CheckCaller(const grpc::ServerContextBase& context) const {
    if (authorizer == nullptr) return absl::OkStatus();
    return authorizer->Check(context, roles, rpc);
  }
  // Whether the caller may make this request (its token was checked by
  // CheckCaller before).
  absl::Status CheckRequest(const grpc::ServerContextBase& context,
                            const Request& request) const {
    if (authorizer == nullptr || request_roles == nullptr) {
      return absl::OkStatus();
    }
    const Roles more = request_roles(request);
    if (more == 0) return absl::OkStatus();
    return authorizer->Check(context, roles | more, rpc);
  }
};

}  // namespace abexp

#endif  // ABEXP_SERVER_SERVICE_CALL_AUTH_H_
