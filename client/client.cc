#include "client/client.h"

#include <random>
#include <string>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "client/absl_probes.h"

namespace abexp {
namespace {

// Codes that mean the request itself is wrong; Assign returns these instead
// of degrading, so the bug gets noticed.
bool IsCallerError(absl::StatusCode code) {
  return code == absl::StatusCode::kInvalidArgument ||
         code == absl::StatusCode::kNotFound;
}

bool IsAuthError(absl::StatusCode code) {
  return code == absl::StatusCode::kUnauthenticated ||
         code == absl::StatusCode::kPermissionDenied;
}

// 128 random bits as 32 hex digits.
std::string RandomKey() {
  thread_local std::mt19937_64 rng{[] {
    std::random_device device;
    std::seed_seq seed{device(), device(), device(), device()};
    return std::mt19937_64(seed);
  }()};
  return absl::StrFormat("%016x%016x", rng(), rng());
}

}  // namespace

absl::Status FromGrpcStatus(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      status.error_message());
}

std::optional<absl::Duration> RetryPushback(
    const grpc::ClientContext& context) {
  const auto& trailers = context.GetServerTrailingMetadata();
  auto it = trailers.find(kRetryPushbackKey);
  if (it == trailers.end()) return std::nullopt;
  int64_t ms = 0;
  if (!absl::SimpleAtoi(absl::string_view(it->second.data(), it->second.size()),
                        &ms) ||
      ms < 0) {
    return std::nullopt;
  }
  return absl::Milliseconds(ms);
}

UnitBuilder& UnitBuilder::Id(absl::string_view type, absl::string_view id) {
  (*unit_.mutable_ids())[std::string(type)] = std::string(id);
  return *this;
}

UnitBuilder& UnitBuilder::String(absl::string_view name,
                                 absl::string_view value) {
  (*unit_.mutable_attributes())[std::string(name)].set_string_value(
      std::string(value));
  return *this;
}

UnitBuilder& UnitBuilder::Number(absl::string_view name, double value) {
  (*unit_.mutable_attributes())[std::string(name)].set_number_value(value);
  return *this;
}

UnitBuilder& UnitBuilder::Bool(absl::string_view name, bool value) {
  (*unit_.mutable_attributes())[std::string(name)].set_bool_value(value);
  return *this;
}

Assignment::Assignment(v1::AssignResponse response)
    : response_(std::move(response)) {}

Assignment Assignment::Degraded(absl::Status cause) {
  Assignment a;
  a.error_ = cause.ok() ? absl::UnknownError("degraded without a cause")
                        : std::move(cause);
  return a;
}

std::optional<std::string> Assignment::variant(
    absl::string_view experiment_key) const {
  for (const v1::Assignment& a : response_.assignments()) {
    if (a.experiment_key() == experiment_key) return a.variant_key();
  }
  return std::nullopt;
}

const v1::ResolvedFeature* FindFeature(const v1::AssignResponse& response,
                                       absl::string_view feature_key) {
  for (const v1::ResolvedFeature& f : response.features()) {
    if (f.key() == feature_key) return &f;
  }
  return nullptr;
}

const v1::FeatureValue* Assignment::Find(absl::string_view feature_key) const {
  const v1::ResolvedFeature* f = FindFeature(response_, feature_key);
  if (f == nullptr || !f->has_value()) return nullptr;
  return &f->value();
}

bool Assignment::GetBool(absl::string_view feature_key, bool fallback) const {
  const v1::FeatureValue* v = Find(feature_key);
  if (v == nullptr || v->kind_case() != v1::FeatureValue::kBoolValue) {
    return fallback;
  }
  return v->bool_value();
}

double Assignment::GetNumber(absl::string_view feature_key,
                             double fallback) const {
  const v1::FeatureValue* v = Find(feature_key);
  if (v == nullptr || v->kind_case() != v1::FeatureValue::kNumberValue) {
    return fallback;
  }
  return v->number_value();
}

std::string Assignment::GetString(absl::string_view feature_key,
                                  absl::string_view fallback) const {
  const v1::FeatureValue* v = Find(feature_key);
  if (v == nullptr || v->kind_case() != v1::FeatureValue::kStringValue) {
    return std::string(fallback);
  }
  return v->string_value();
}

std::string Assignment::GetJson(absl::string_view feature_key,
                                absl::string_view fallback) const {
  const v1::FeatureValue* v = Find(feature_key);
  if (v == nullptr || v->kind_case() != v1::FeatureValue::kJsonValue) {
    return std::string(fallback);
  }
  return v->json_value();
}

absl::StatusOr<std::unique_ptr<Client>> Client::Create(ClientOptions options) {
  if (options.target.empty()) {
    return absl::InvalidArgumentError(
        "ClientOptions.target is empty; set it to the abexp-server address, "
        "e.g. \"127.0.0.1:50051\"");
  }
  if (options.deadline <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "ClientOptions.deadline is ", absl::FormatDuration(options.deadline),
        "; it must be positive (the default is 50ms)"));
  }
  if (options.record_deadline <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("ClientOptions.record_deadline is ",
                     absl::FormatDuration(options.record_deadline),
                     "; it must be positive (the default is 5s)"));
  }
  if (options.max_attempts < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("ClientOptions.max_attempts is ", options.max_attempts,
                     "; it must be at least 1 (the default is 3)"));
  }
  if (options.initial_backoff < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "ClientOptions.initial_backoff is negative; use zero or more");
  }
  absl::StatusOr<ChannelSecurity> security = ResolveSecurityUnless(
      options.credentials != nullptr, "ClientOptions.credentials",
      options.security, "ClientOptions.security.");
  if (!security.ok()) return security.status();
  RunAbslProbesBeforeConnecting();  // client/absl_probes.h says why
  std::shared_ptr<grpc::Channel> channel = grpc::CreateCustomChannel(
      options.target,
      options.credentials != nullptr ? options.credentials
                                     : security->credentials(),
      options.channel_args);
  if (channel == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot create a gRPC channel to '", options.target,
                     "'; check the target, e.g. \"host:port\""));
  }
  // Connect now so the first call does not spend its deadline on setup.
  channel->GetState(/*try_to_connect=*/true);
  return std::unique_ptr<Client>(
      new Client(std::move(options), *std::move(security), std::move(channel)));
}

Client::Client(ClientOptions options, ChannelSecurity security,
               std::shared_ptr<grpc::Channel> channel)
    : options_(std::move(options)),
      security_(std::move(security)),
      channel_(std::move(channel)),
      stub_(v1::AssignmentService::NewStub(channel_)),
      recording_stub_(v1::RecordingService::NewStub(channel_)),
      results_stub_(v1::ResultsService::NewStub(channel_)) {}

template <typename Rpc>
absl::Status Client::Call(const Rpc& rpc, absl::Duration budget) const {
  const absl::Time deadline = absl::Now() + budget;
  absl::Duration backoff = options_.initial_backoff;
  absl::Status status;
  for (int attempt = 1;; ++attempt) {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(deadline));
    security_.Apply(&context);
    status = FromGrpcStatus(rpc(&context));
    if (status.code() != absl::StatusCode::kUnavailable ||
        attempt >= options_.max_attempts) {
      break;
    }
    // Retry only if a backoff still leaves time for the attempt itself.
    if (absl::Now() + backoff >= deadline) break;
    absl::SleepFor(backoff);
    backoff *= 2;
  }
  if (!status.ok()) {
    const std::string note = AuthErrorNote(status.code(), security_);
    status = absl::Status(
        status.code(), absl::StrCat("abexp-server at ", options_.target, ": ",
                                    status.message(), note.empty() ? "" : " (",
                                    note, note.empty() ? "" : ")"));
  }
  NoteAuth(status);
  return status;
}

void Client::NoteAuth(const absl::Status& status) const {
  if (IsAuthError(status.code())) {
    absl::MutexLock lock(&auth_mu_);
    auth_error_ = status;
    has_auth_error_.store(true, std::memory_order_release);
  } else if (status.ok() && has_auth_error_.load(std::memory_order_acquire)) {
    absl::MutexLock lock(&auth_mu_);
    auth_error_ = absl::OkStatus();
    has_auth_error_.store(false, std::memory_order_release);
  }
}

absl::Status Client::auth_error() const {
  absl::MutexLock lock(&auth_mu_);
  return auth_error_;
}

absl::StatusOr<Assignment> Client::Assign(
    const v1::Unit& unit, const std::vector<std::string>& experiment_keys,
    const std::vector<std::string>& feature_keys) const {
  v1::AssignRequest request;
  *request.mutable_unit() = unit;
  for (const std::string& k : experiment_keys) request.add_experiment_keys(k);
  for (const std::string& k : feature_keys) request.add_feature_keys(k);
  v1::AssignResponse response;
  absl::Status status = Call([&](grpc::ClientContext* context) {
    return stub_->Assign(context, request, &response);
  });
  if (status.ok()) return Assignment(std::move(response));
  if (IsCallerError(status.code())) return status;
  return Assignment::Degraded(std::move(status));
}

absl::StatusOr<v1::BatchAssignResponse> Client::BatchAssign(
    const v1::BatchAssignRequest& request) const {
  v1::BatchAssignResponse response;
  absl::Status status = Call([&](grpc::ClientContext* context) {
    return stub_->BatchAssign(context, request, &response);
  });
  if (!status.ok()) return status;
  return response;
}

absl::StatusOr<v1::ExplainAssignmentResponse> Client::Explain(
    const v1::Unit& unit, const std::string& experiment_key) const {
  v1::ExplainAssignmentRequest request;
  *request.mutable_unit() = unit;
  request.set_experiment_key(experiment_key);
  v1::ExplainAssignmentResponse response;
  absl::Status status = Call([&](grpc::ClientContext* context) {
    return stub_->ExplainAssignment(context, request, &response);
  });
  if (!status.ok()) return status;
  return response;
}

absl::StatusOr<v1::ListExperimentsResponse> Client::ListExperiments(
    const v1::ListExperimentsRequest& request) const {
  v1::ListExperimentsResponse response;
  absl::Status status = Call([&](grpc::ClientContext* context) {
    return stub_->ListExperiments(context, request, &response);
  });
  if (!status.ok()) return status;
  return response;
}

absl::StatusOr<v1::Experiment> Client::GetExperiment(
    const std::string& experiment_key) const {
  v1::GetExperimentRequest request;
  request.set_experiment_key(experiment_key);
  v1::Experiment response;
  absl::Status status = Call([&](grpc::ClientContext* context) {
    return stub_->GetExperiment(context, request, &response);
  });
  if (!status.ok()) return status;
  return response;
}

absl::StatusOr<v1::RecordExposuresResponse> Client::RecordExposures(
    const v1::RecordExposuresRequest& request) const {
  v1::RecordExposuresResponse response;
  absl::Status status = Call(
      [&](grpc::ClientContext* context) {
        return recording_stub_->RecordExposures(context, request, &response);
      },
      options_.record_deadline);
  if (!status.ok()) return status;
  return response;
}

absl::StatusOr<v1::RecordEventsResponse> Client::RecordEvents(
    v1::RecordEventsRequest request) const {
  // Without a time the server would make a random key per attempt; fix
  // both here so every attempt carries the same ones.
  const int64_t nanos = absl::ToUnixNanos(absl::Now());
  for (v1::EventRecord& event : *request.mutable_events()) {
    if (event.has_time()) continue;
    event.mutable_time()->set_seconds(nanos / 1000000000);
    event.mutable_time()->set_nanos(static_cast<int32_t>(nanos % 1000000000));
    if (event.idempotency_key().empty()) {
      event.set_idempotency_key(RandomKey());
    }
  }
  v1::RecordEventsResponse response;
  absl::Status status = Call(
      [&](grpc::ClientContext* context) {
        return recording_stub_->RecordEvents(context, request, &response);
      },
      options_.record_deadline);
  if (!status.ok()) return status;
  return response;
}

absl::StatusOr<v1::GetResultsResponse> Client::GetResults(
    const v1::GetResultsRequest& request) const {
  v1::GetResultsResponse response;
  absl::Status status = Call([&](grpc::ClientContext* context) {
    return results_stub_->GetResults(context, request, &response);
  });
  if (!status.ok()) return status;
  return response;
}

}  // namespace abexp
