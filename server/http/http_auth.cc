#include "server/http/http_auth.h"

#include <optional>
#include <string>

#include "absl/strings/str_cat.h"

namespace abexp {

absl::Status HttpAuthorizer::Check(const HttpRequest& request, Roles needed,
                                   absl::string_view what) const {
  if (tokens_ == nullptr) return absl::OkStatus();
  std::optional<absl::string_view> authorization =
      request.Header("Authorization");
  std::string from_api_key;
  if (!authorization.has_value()) {
    std::optional<absl::string_view> api_key = request.Header(kApiKeyHeader);
    if (!api_key.has_value()) {
      return absl::UnauthenticatedError(absl::StrCat(
          what,
          " needs a token: this abexp-server checks callers; send the header "
          "\"Authorization: Bearer abexp_...\" or \"",
          kApiKeyHeader, ": abexp_...\" with a token that has the role ",
          RoleNames(needed)));
    }
    // The same check as a bearer token: one table, one set of messages.
    from_api_key = absl::StrCat("Bearer ", *api_key);
    authorization = from_api_key;
  }
  return tokens_->Snapshot()->Check(authorization, needed, what);
}

int HttpStatusOf(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kUnauthenticated:
      return 401;
    case absl::StatusCode::kPermissionDenied:
      return 403;
    default:
      return 500;
  }
}

void AddAuthChallenge(HttpResponse* response) {
  if (response->status == 401) {
    response->headers.emplace_back("WWW-Authenticate",
                                   "Bearer realm=\"abexp\"");
  }
}

HttpResponse HttpAuthFailure(const absl::Status& status) {
  HttpResponse response;
  response.status = HttpStatusOf(status);
  response.body = absl::StrCat(status.message(), "\n");
  AddAuthChallenge(&response);
  return response;
}

}  // namespace abexp
