// Who may call an HTTP route: the token a request carries, checked against
// the same token table (--auth_tokens_file, server/core/token_table.h) and
// roles as gRPC calls. A request presents its token either way OFREP's
// OpenAPI description declares:
//   Authorization: Bearer abexp_...   (BearerAuth)
//   X-API-Key: abexp_...              (ApiKeyAuth)
// Authorization wins when both are sent.
//
//   HttpAuthorizer auth(tokens);  // null: tokens off, every request passes
//   if (absl::Status s = auth.Check(request, kRoleResults, "GET /x"); !s.ok())
//     return HttpAuthFailure(s);  // 401 with WWW-Authenticate, or 403
//
// Thread-safe: Check may be called concurrently.
#ifndef ABEXP_SERVER_HTTP_HTTP_AUTH_H_
#define ABEXP_SERVER_HTTP_HTTP_AUTH_H_

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "server/core/token_store.h"
#include "server/core/token_table.h"
#include "server/http/http_types.h"

namespace abexp {

// The header of OFREP's ApiKeyAuth scheme.
inline constexpr absl::string_view kApiKeyHeader = "X-API-Key";

class HttpAuthorizer {
 public:
  // Checks requests against `tokens`' table in force; null: every request
  // is allowed (abexp-server without --auth_tokens_file).
  // REQUIRES: tokens outlives this authorizer.
  explicit HttpAuthorizer(const TokenStore* tokens) : tokens_(tokens) {}

  HttpAuthorizer(const HttpAuthorizer&) = delete;
  HttpAuthorizer& operator=(const HttpAuthorizer&) = delete;

  // OK when the request's token has every role in `needed` (or tokens are
  // off). UNAUTHENTICATED when it sends no token, a malformed one or one
  // not in the table; PERMISSION_DENIED, naming the token's name, `what`
  // ("POST /ofrep/v1/evaluate/flags") and the missing roles, when it lacks
  // a role.
  absl::Status Check(const HttpRequest& request, Roles needed,
                     absl::string_view what) const;

  bool enabled() const { return tokens_ != nullptr; }

 private:
  const TokenStore* const tokens_;  // not owned; may be null
};

// The HTTP status of a failed Check: 401 for UNAUTHENTICATED, 403 for
// PERMISSION_DENIED, 500 for anything else.
int HttpStatusOf(const absl::Status& status);

// Adds "WWW-Authenticate: Bearer realm=\"abexp\"" to a 401 response, as
// RFC 9110 requires of one.
void AddAuthChallenge(HttpResponse* response);

// A plain-text answer to a failed Check: its status, the challenge on a
// 401, and the message (what is wrong and how to fix it).
HttpResponse HttpAuthFailure(const absl::Status& status);

}  // namespace abexp

#endif  // ABEXP_SERVER_HTTP_HTTP_AUTH_H_
