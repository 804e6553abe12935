// abexp::Client: the C++ client backend services use to ask abexp-server
// which experiment variants and feature values a unit gets.
//
//   abexp::ClientOptions options;
//   options.target = "abexp:50051";
//   auto client = abexp::Client::Create(std::move(options));
//   abexp::v1::Unit unit = abexp::UnitBuilder()
//                              .Id("user_id", "u-123")
//                              .String("country", "CN")
//                              .Number("days_since_signup", 3)
//                              .Build();
//   absl::StatusOr<abexp::Assignment> a = (*client)->Assign(unit);
//   if (!a.ok()) { /* a bug in the request: log it, use defaults */ }
//   bool fast = a->GetBool("new_search", false);
//
// Assign is built for page views: it never fails because abexp is slow or
// down. When the server cannot answer in time it returns a degraded
// Assignment that has no variants and hands back every caller's fallback.
// It returns an error only for a bad request (INVALID_ARGUMENT, NOT_FOUND),
// which is a bug in the caller.
//
// TLS and the access token come from options.security or the environment
// (ABEXP_TLS_CA_FILE, ABEXP_TLS_CERT_FILE, ABEXP_TLS_KEY_FILE, ABEXP_TOKEN;
// see client/credentials.h). A token the server refuses (UNAUTHENTICATED:
// missing or unknown; PERMISSION_DENIED: it lacks a role) is a deployment
// error, not a bug in the request: Assign degrades on it like on an outage,
// so pages still render, never retries it, and the degraded Assignment's
// error() has that code and says what to fix. auth_error() keeps the latest
// such refusal until a call succeeds, for a health check or an alert to
// notice it.
//
// Recording (RecordExposures, RecordEvents) is synchronous: a call returns
// once the server has stored the batch, or an error. Retries are safe: every
// attempt carries the same idempotency keys.
//
// Thread-safe: a Client may be used from any number of threads at once.
// Create one per process and share it; it owns one gRPC channel.
#ifndef ABEXP_CLIENT_CLIENT_H_
#define ABEXP_CLIENT_CLIENT_H_

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "abexp/v1/assignment.grpc.pb.h"
#include "abexp/v1/assignment.pb.h"
#include "abexp/v1/recording.grpc.pb.h"
#include "abexp/v1/recording.pb.h"
#include "abexp/v1/results.grpc.pb.h"
#include "abexp/v1/results.pb.h"
#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "client/credentials.h"

namespace abexp {

struct ClientOptions {
  // The server, as "host:port" or any gRPC target URI.
  // Default: "127.0.0.1:50051".
  std::string target = "127.0.0.1:50051";

  // Budget for one call, covering every attempt and the backoff between
  // them (the deadline is overall, not per attempt). Default: 50ms.
  absl::Duration deadline = absl::Milliseconds(50);

  // Budget for one recording call (RecordExposures, RecordEvents), covering
  // every attempt. Larger than `deadline`: a batch of 10,000 events takes
  // longer than one assignment. Default: 5s.
  absl::Duration record_deadline = absl::Seconds(5);

  // Attempts per call. Only UNAVAILABLE is retried, and only while the
  // deadline leaves time for another attempt. Default: 3.
  int max_attempts = 3;

  // Wait before the second attempt; doubled before each later one.
  // Default: 2ms.
  absl::Duration initial_backoff = absl::Milliseconds(2);

  // TLS and the access token (client/credentials.h): tls_ca_file,
  // tls_cert_file and tls_key_file, tls, token. Options left empty are read
  // from ABEXP_TLS_CA_FILE, ABEXP_TLS_CERT_FILE, ABEXP_TLS_KEY_FILE and
  // ABEXP_TOKEN unless security.use_environment is false. Create checks the
  // files and the token's form and names the option or variable at fault.
  // Default: plaintext, no token (unless the variables say otherwise).
  SecurityOptions security;

  // Channel credentials of your own, instead of security's TLS settings
  // (then its tls_* options must be empty, and the ABEXP_TLS_* variables
  // are not read; the token still applies). Default: null.
  std::shared_ptr<grpc::ChannelCredentials> credentials;

  // Extra gRPC channel arguments (keepalive, load balancing, ...).
  // Default: none.
  grpc::ChannelArguments channel_args;
};

// Converts a gRPC status to the absl::Status with the same code and message.
absl::Status FromGrpcStatus(const grpc::Status& status);

// The trailing metadata key of gRPC's retry hint: how many milliseconds the
// server asks the client to wait before sending a refused call again
// (abexp-server sends it with RESOURCE_EXHAUSTED when it bounds recording).
inline constexpr char kRetryPushbackKey[] = "grpc-retry-pushback-ms";

// The delay `context`'s finished call asked for in kRetryPushbackKey, or
// nullopt when it sent none or a value that is not a whole number of
// milliseconds (gRPC: a malformed or negative one means "do not retry").
// REQUIRES: the call has finished.
std::optional<absl::Duration> RetryPushback(const grpc::ClientContext& context);

// Builds an abexp.v1.Unit: ids to hash on and attributes for targeting.
// Attribute types must match the config's `attributes:` declarations;
// semver attributes are strings.
class UnitBuilder {
 public:
  // Sets an id, e.g. Id("user_id", "u-123"). A later call for the same type
  // replaces the earlier one; so do the attribute setters.
  UnitBuilder& Id(absl::string_view type, absl::string_view id);
  UnitBuilder& String(absl::string_view name, absl::string_view value);
  UnitBuilder& Number(absl::string_view name, double value);
  UnitBuilder& Bool(absl::string_view name, bool value);

  const v1::Unit& unit() const { return unit_; }
  v1::Unit Build() const { return unit_; }

 private:
  v1::Unit unit_;
};

// The resolved feature `feature_key` of a raw response (an
// Assignment::response(), or one of a BatchAssign's results), or null when
// the response does not carry it. A linear scan of the response's list:
// with a few dozen features it is as fast as a map lookup; to look up many
// keys in a large response, index it once instead.
const v1::ResolvedFeature* FindFeature(const v1::AssignResponse& response,
                                       absl::string_view feature_key);

// One unit's answer from Assign, with typed access to feature values.
// Immutable, so safe to read from several threads.
class Assignment {
 public:
  // A normal answer from the server.
  explicit Assignment(v1::AssignResponse response);
  // An answer for when the server could not be reached; `cause` says why.
  // REQUIRES: !cause.ok().
  static Assignment Degraded(absl::Status cause);

  // The variant key the unit gets in the experiment, or nullopt when it is
  // in no variant (or the assignment is degraded).
  std::optional<std::string> variant(absl::string_view experiment_key) const;

  // A feature's value, or `fallback` when the feature was not returned, has
  // another type, or the assignment is degraded.
  bool GetBool(absl::string_view feature_key, bool fallback) const;
  double GetNumber(absl::string_view feature_key, double fallback) const;
  std::string GetString(absl::string_view feature_key,
                        absl::string_view fallback) const;
  // Compact JSON text, for features of type json.
  std::string GetJson(absl::string_view feature_key,
                      absl::string_view fallback) const;

  // The content hash of the config that answered; empty when degraded.
  const std::string& config_version() const {
    return response_.config_version();
  }
  // True when the unit is in the global holdout.
  bool in_holdout() const { return response_.in_holdout(); }

  // True when the server could not answer in time; error() says why.
  bool degraded() const { return !error_.ok(); }
  // OK unless degraded.
  const absl::Status& error() const { return error_; }

  // The raw response (empty when degraded), e.g. for exposure logging.
  const v1::AssignResponse& response() const { return response_; }

 private:
  Assignment() = default;
  // The feature's value, or null when it was not returned.
  const v1::FeatureValue* Find(absl::string_view feature_key) const;

  v1::AssignResponse response_;
  absl::Status error_;
};

class Client {
 public:
  // Creates a client for options.target and starts connecting in the
  // background, so the first call does not pay for the TCP handshake.
  // INVALID_ARGUMENT when an option is out of range.
  static absl::StatusOr<std::unique_ptr<Client>> Create(ClientOptions options);

  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Every experiment the unit is in and its feature values. Empty key lists
  // mean all experiments / all features.
  //
  // Returns INVALID_ARGUMENT (a bad unit) or NOT_FOUND (an unknown key) as
  // errors. Every other failure, such as DEADLINE_EXCEEDED or UNAVAILABLE,
  // and UNAUTHENTICATED or PERMISSION_DENIED (the token: see auth_error()),
  // returns a degraded Assignment instead, so callers can always render.
  absl::StatusOr<Assignment> Assign(
      const v1::Unit& unit,
      const std::vector<std::string>& experiment_keys = {},
      const std::vector<std::string>& feature_keys = {}) const;

  // The calls below return the server's error as is (with the same code),
  // after the usual retries on UNAVAILABLE. Every call's error message
  // starts "abexp-server at TARGET: "; for UNAUTHENTICATED and
  // PERMISSION_DENIED it ends with whether a token was sent and from where
  // (never the token) and what to fix.
  absl::StatusOr<v1::BatchAssignResponse> BatchAssign(
      const v1::BatchAssignRequest& request) const;
  absl::StatusOr<v1::ExplainAssignmentResponse> Explain(
      const v1::Unit& unit, const std::string& experiment_key) const;
  absl::StatusOr<v1::ListExperimentsResponse> ListExperiments(
      const v1::ListExperimentsRequest& request = {}) const;
  absl::StatusOr<v1::Experiment> GetExperiment(
      const std::string& experiment_key) const;

  // Records exposures / events, with options().record_deadline. Events
  // without a time get the client's current time and, when they have no
  // idempotency_key, a random one, so the retries on UNAVAILABLE count
  // once. To retry across calls or processes safely, set the keys (or
  // times) yourself. Returns
  // the server's error as is: INVALID_ARGUMENT names the bad item, e.g.
  // "events[12].value is NaN; ...", and nothing of the batch was stored;
  // UNAVAILABLE / DEADLINE_EXCEEDED mean it may or may not have been, and
  // the same request may be sent again.
  absl::StatusOr<v1::RecordExposuresResponse> RecordExposures(
      const v1::RecordExposuresRequest& request) const;
  absl::StatusOr<v1::RecordEventsResponse> RecordEvents(
      v1::RecordEventsRequest request) const;

  // One experiment's results (ResultsService.GetResults), within
  // options().deadline. Returns the server's error as is: NOT_FOUND for an
  // unknown experiment (the message names the known ones), INVALID_ARGUMENT
  // for a bad alpha, adjust method or metric key.
  absl::StatusOr<v1::GetResultsResponse> GetResults(
      const v1::GetResultsRequest& request) const;

  // The latest UNAUTHENTICATED or PERMISSION_DENIED error of any call, until
  // a later call succeeds; OK otherwise. A token that is missing, unknown to
  // the server or without a role makes every such call fail: poll this (a
  // health check, a metric) to notice it, since Assign hides it from pages.
  absl::Status auth_error() const;

  const ClientOptions& options() const { return options_; }

 private:
  Client(ClientOptions options, ChannelSecurity security,
         std::shared_ptr<grpc::Channel> channel);

  // Keeps or clears auth_error() after a call that ended with `status`.
  void NoteAuth(const absl::Status& status) const;

  // Runs `rpc(context)` within `budget` overall, retrying UNAVAILABLE.
  template <typename Rpc>
  absl::Status Call(const Rpc& rpc, absl::Duration budget) const;
  template <typename Rpc>
  absl::Status Call(const Rpc& rpc) const {
    return Call(rpc, options_.deadline);
  }

  const ClientOptions options_;
  const ChannelSecurity security_;
  const std::shared_ptr<grpc::Channel> channel_;
  // Stubs are thread-safe.
  const std::unique_ptr<v1::AssignmentService::Stub> stub_;
  const std::unique_ptr<v1::RecordingService::Stub> recording_stub_;
  const std::unique_ptr<v1::ResultsService::Stub> results_stub_;

  // Set while auth_error_ holds an error, so a successful call takes no
  // lock unless one must be cleared.
  mutable std::atomic<bool> has_auth_error_{false};
  mutable absl::Mutex auth_mu_;
  mutable absl::Status auth_error_ ABSL_GUARDED_BY(auth_mu_);
};

}  // namespace abexp

#endif  // ABEXP_CLIENT_CLIENT_H_
