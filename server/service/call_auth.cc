#include "server/service/call_auth.h"

#include <optional>

namespace abexp {

absl::Status CallAuthorizer::Check(const grpc::ServerContextBase& context,
                                   Roles needed, absl::string_view rpc) const {
  if (tokens_ == nullptr) return absl::OkStatus();
  std::optional<absl::string_view> authorization;
  const auto& metadata = context.client_metadata();
  auto it = metadata.find("authorization");
  if (it != metadata.end()) {
    authorization = absl::string_view(it->second.data(), it->second.size());
  }
  return tokens_->Snapshot()->Check(authorization, needed, rpc);
}

}  // namespace abexp
