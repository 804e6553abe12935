// Tokens and roles (--auth_tokens_file) on a real abexp-server recording into
// a real redis-server: every RPC against every kind of caller, over plain
// text, TLS and mTLS; reloads of the token file on SIGHUP; and how the server
// starts with a good, a bad and an over-readable file.
#include <signal.h>
#include <sys/stat.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "abexp/v1/assignment.grpc.pb.h"
#include "abexp/v1/recording.grpc.pb.h"
#include "abexp/v1/results.grpc.pb.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "server/testing/auth_test_util.h"
#include "server/testing/recording_test_util.h"
#include "server/testing/redis_process.h"
#include "server/testing/server_process.h"
#include "server/testing/test_certs.h"

namespace abexp::testing {
namespace {

using ::testing::Contains;
using ::testing::HasSubstr;

constexpr char kConfig[] = R"yaml(
metrics:
  - key: order_conversion
    type: binomial
    event: order_completed
experiments:
  - key: checkout
    status: running
    variants:
      - {key: control, weight: 50}
      - {key: treatment, weight: 50}
    metrics: [order_conversion]
    primary_metric: order_conversion
)yaml";

// ---- the contract (issue 15), written once ----

enum Role : unsigned { kAssign = 1, kRecord = 2, kResults = 4, kAdmin = 8 };
constexpr unsigned kOpen = 0;  // no role: the call is never checked

// The roles each RPC needs.
struct RpcRule {
  const char* rpc;
  unsigned needs;
};
constexpr RpcRule kRules[] = {
    {"Assign", kAssign},
    {"Assign with record_exposure", kAssign | kRecord},
    {"BatchAssign", kAssign},
    {"ExplainAssignment", kAssign},
    {"ListExperiments", kAssign},
    {"GetExperiment", kAssign},
    {"RecordExposures", kRecord},
    {"RecordEvents", kRecord},
    {"GetResults", kResults},
    {"ServerReflectionInfo", kAdmin},
    {"Health/Check", kOpen},
};

// Who calls: with which authorization header, and the roles of its token
// (nullopt: the server knows no token for it).
struct Caller {
  const char* what;
  Authorization authorization;
  std::optional<unsigned> roles;
  const char* name = "";  // its name in the token file
};

const std::string kAssignToken = MakeToken('a', "1");
const std::string kRecordToken = MakeToken('r', "2");
const std::string kResultsToken = MakeToken('s', "3");
const std::string kAdminToken = MakeToken('d', "4");
const std::string kCheckoutToken = MakeToken('c', "5");

std::vector<Caller> Callers() {
  return {
      {"no token", std::nullopt, std::nullopt},
      {"a header that is not Bearer", "Basic " + kAdminToken, std::nullopt},
      {"a bearer value that is no abexp token", Bearer("abexp_0123"),
       std::nullopt},
      {"an unknown token", Bearer(MakeToken('u', "6")), std::nullopt},
      {"assign", Bearer(kAssignToken), kAssign, "frontend"},
      {"record", Bearer(kRecordToken), kRecord, "event-pipeline"},
      {"results", Bearer(kResultsToken), kResults, "analyst"},
      {"admin", Bearer(kAdminToken), kAdmin, "ops"},
      {"assign and record", Bearer(kCheckoutToken), kAssign | kRecord,
       "checkout-service"},
  };
}

std::string TokenFile() {
  return absl::StrCat(
      "# test callers\n", TokenFileLine("frontend", "assign", kAssignToken),
      TokenFileLine("event-pipeline", "record", kRecordToken),
      TokenFileLine("analyst", "results", kResultsToken),
      TokenFileLine("ops", "admin", kAdminToken),
      TokenFileLine("checkout-service", "record,assign", kCheckoutToken));
}

// What the contract says `caller` gets from an RPC that needs `needs`.
grpc::StatusCode Expected(const Caller& caller, unsigned needs) {
  if (needs == kOpen) return grpc::StatusCode::OK;
  if (!caller.roles.has_value()) return grpc::StatusCode::UNAUTHENTICATED;
  if ((*caller.roles & kAdmin) != 0 || (*caller.roles & needs) == needs) {
    return grpc::StatusCode::OK;
  }
  return grpc::StatusCode::PERMISSION_DENIED;
}

// ---- the calls: valid requests, so that an allowed call succeeds ----

v1::Unit User1() { return User("u-1"); }

// Makes the call `rpc` names with `authorization`. For an allowed call, also
// checks what it answered (a failed check is a test failure here).
grpc::Status Call(const std::shared_ptr<grpc::Channel>& channel,
                  const std::string& rpc, const Authorization& authorization) {
  auto assign = v1::AssignmentService::NewStub(channel);
  auto record = v1::RecordingService::NewStub(channel);
  auto results = v1::ResultsService::NewStub(channel);
  grpc::ClientContext context;
  PrepareContext(authorization, &context);
  if (rpc == "Assign" || rpc == "Assign with record_exposure") {
    v1::AssignRequest request;
    *request.mutable_unit() = User1();
    request.set_record_exposure(rpc != "Assign");
    v1::AssignResponse response;
    grpc::Status status = assign->Assign(&context, request, &response);
    if (status.ok()) {
      EXPECT_EQ(response.assignments_size(), 1);
      EXPECT_EQ(response.exposure_error(), "");
    }
    return status;
  }
  if (rpc == "BatchAssign") {
    v1::BatchAssignRequest request;
    *request.add_units() = User1();
    *request.add_units() = User("u-2");
    v1::BatchAssignResponse response;
    grpc::Status status = assign->BatchAssign(&context, request, &response);
    if (status.ok()) {
      EXPECT_EQ(response.results_size(), 2);
    }
    return status;
  }
  if (rpc == "ExplainAssignment") {
    v1::ExplainAssignmentRequest request;
    *request.mutable_unit() = User1();
    request.set_experiment_key("checkout");
    v1::ExplainAssignmentResponse response;
    grpc::Status status =
        assign->ExplainAssignment(&context, request, &response);
    if (status.ok()) {
      EXPECT_NE(response.variant_key(), "");
    }
    return status;
  }
  if (rpc == "ListExperiments") {
    v1::ListExperimentsResponse response;
    grpc::Status status = assign->ListExperiments(
        &context, v1::ListExperimentsRequest(), &response);
    if (status.ok()) {
      EXPECT_EQ(response.experiments_size(), 1);
    }
    return status;
  }
  if (rpc == "GetExperiment") {
    v1::GetExperimentRequest request;
    request.set_experiment_key("checkout");
    v1::Experiment response;
    grpc::Status status = assign->GetExperiment(&context, request, &response);
    if (status.ok()) {
      EXPECT_EQ(response.key(), "checkout");
    }
    return status;
  }
  if (rpc == "RecordExposures") {
    v1::RecordExposuresRequest request;
    v1::ExposureRecord* exposure = request.add_exposures();
    exposure->set_experiment_key("checkout");
    exposure->set_variant_key("control");
    *exposure->mutable_unit() = User1();
    v1::RecordExposuresResponse response;
    grpc::Status status = record->RecordExposures(&context, request, &response);
    if (status.ok()) {
      EXPECT_EQ(response.results_size(), 1);
    }
    return status;
  }
  if (rpc == "RecordEvents") {
    v1::RecordEventsRequest request;
    v1::EventRecord* event = request.add_events();
    event->set_name("order_completed");
    *event->mutable_unit() = User1();
    v1::RecordEventsResponse response;
    grpc::Status status = record->RecordEvents(&context, request, &response);
    if (status.ok()) {
      EXPECT_EQ(response.results_size(), 1);
    }
    return status;
  }
  if (rpc == "GetResults") {
    v1::GetResultsRequest request;
    request.set_experiment_key("checkout");
    v1::GetResultsResponse response;
    grpc::Status status = results->GetResults(&context, request, &response);
    if (status.ok()) {
      EXPECT_EQ(response.experiment_key(), "checkout");
    }
    return status;
  }
  if (rpc == "ServerReflectionInfo") {
    std::vector<std::string> services;
    grpc::Status status = ListServices(channel, authorization, &services);
    if (status.ok()) {
      EXPECT_THAT(services, Contains("abexp.v1.AssignmentService"));
    }
    return status;
  }
  bool serving = false;
  grpc::Status status = CheckHealth(channel, authorization, &serving);
  if (status.ok()) {
    EXPECT_TRUE(serving);
  }
  return status;
}

// ---- the matrix, over each transport ----

enum class Transport { kPlainText, kTls, kMutualTls };

class AuthMatrixTest : public ::testing::TestWithParam<Transport> {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<RedisProcess>> redis = RedisProcess::Start();
    ASSERT_TRUE(redis.ok()) << redis.status();
    redis_ = *std::move(redis);
    const std::string tokens = dir_.Write("tokens.txt", TokenFile());
    ASSERT_EQ(chmod(tokens.c_str(), 0600), 0);
    std::vector<std::string> args = {"--redis=" + redis_->address(),
                                     "--auth_tokens_file=" + tokens};
    std::shared_ptr<grpc::ChannelCredentials> credentials;
    if (GetParam() != Transport::kPlainText) {
      absl::StatusOr<TestCertificates> certs = TestCertificates::Create(dir_);
      ASSERT_TRUE(certs.ok()) << certs.status();
      args.push_back("--tls_cert_file=" + certs->ca1.server.cert);
      args.push_back("--tls_key_file=" + certs->ca1.server.key);
      CertAndKey client;
      if (GetParam() == Transport::kMutualTls) {
        args.push_back("--tls_client_ca_file=" + certs->ca1.cert);
        client = certs->ca1.client;
      }
      credentials = TlsCredentials(certs->ca1.cert, client);
    }
    absl::StatusOr<std::unique_ptr<ServerProcess>> server =
        ServerProcess::Start(dir_.Write("experiments.yaml", kConfig), args,
                             credentials);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    channel_ = grpc::CreateChannel(server_->address(), server_->credentials());
  }

  TempDir dir_;
  std::unique_ptr<RedisProcess> redis_;
  std::unique_ptr<ServerProcess> server_;
  std::shared_ptr<grpc::Channel> channel_;
};

TEST_P(AuthMatrixTest, EveryRpcAnswersEveryCallerAsTheContractSays) {
  for (const RpcRule& rule : kRules) {
    for (const Caller& caller : Callers()) {
      SCOPED_TRACE(absl::StrCat(rule.rpc, " by a caller with ", caller.what));
      grpc::Status status = Call(channel_, rule.rpc, caller.authorization);
      const grpc::StatusCode want = Expected(caller, rule.needs);
      EXPECT_EQ(status.error_code(), want) << status.error_message();
      if (want == grpc::StatusCode::PERMISSION_DENIED) {
        // The message names the token and the RPC.
        EXPECT_THAT(status.error_message(), HasSubstr(caller.name));
        EXPECT_THAT(status.error_message(), HasSubstr("lacks the role"));
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Transports, AuthMatrixTest,
                         ::testing::Values(Transport::kPlainText,
                                           Transport::kTls,
                                           Transport::kMutualTls),
                         [](const ::testing::TestParamInfo<Transport>& info) {
                           switch (info.param) {
                             case Transport::kPlainText:
                               return "PlainText";
                             case Transport::kTls:
                               return "Tls";
                             case Transport::kMutualTls:
                               return "MutualTls";
                           }
                           return "Unknown";
                         });

// ---- the file: start and reload ----

// A server on plain text whose token file is dir_/tokens.txt, with no Redis
// (the calls here need none).
class AuthFileTest : public ::testing::Test {
 protected:
  void WriteTokens(const std::string& text) {
    tokens_ = dir_.Write("tokens.txt", text);
    ASSERT_EQ(chmod(tokens_.c_str(), 0600), 0);
  }

  absl::StatusOr<std::unique_ptr<ServerProcess>> StartServer() {
    return ServerProcess::Start(
        dir_.Write("experiments.yaml", kConfig),
        {"--redis=127.0.0.1:1", "--auth_tokens_file=" + tokens_});
  }

  // The code of a ListExperiments call with `token`.
  grpc::StatusCode ListWith(const std::string& token) {
    return Call(channel_, "ListExperiments", Bearer(token)).error_code();
  }

  TempDir dir_;
  std::string tokens_;
  std::unique_ptr<ServerProcess> server_;
  std::shared_ptr<grpc::Channel> channel_;
};

TEST_F(AuthFileTest, SighupAddsAndRemovesTokensAndABrokenFileKeepsTheOld) {
  const std::string newcomer = MakeToken('n', "7");
  ASSERT_NO_FATAL_FAILURE(
      WriteTokens(TokenFileLine("frontend", "assign", kAssignToken)));
  absl::StatusOr<std::unique_ptr<ServerProcess>> server = StartServer();
  ASSERT_TRUE(server.ok()) << server.status();
  server_ = *std::move(server);
  channel_ = grpc::CreateChannel(server_->address(),
                                 grpc::InsecureChannelCredentials());
  ASSERT_EQ(ListWith(kAssignToken), grpc::StatusCode::OK);
  ASSERT_EQ(ListWith(newcomer), grpc::StatusCode::UNAUTHENTICATED);

  // Added.
  ASSERT_NO_FATAL_FAILURE(
      WriteTokens(TokenFileLine("frontend", "assign", kAssignToken) +
                  TokenFileLine("newcomer", "assign", newcomer)));
  ASSERT_TRUE(server_->Signal(SIGHUP).ok());
  EXPECT_TRUE(
      Eventually([&] { return ListWith(newcomer) == grpc::StatusCode::OK; },
                 absl::Seconds(20), absl::Milliseconds(20)));

  // Removed.
  ASSERT_NO_FATAL_FAILURE(
      WriteTokens(TokenFileLine("newcomer", "assign", newcomer)));
  ASSERT_TRUE(server_->Signal(SIGHUP).ok());
  EXPECT_TRUE(Eventually(
      [&] {
        return ListWith(kAssignToken) == grpc::StatusCode::UNAUTHENTICATED;
      },
      absl::Seconds(20), absl::Milliseconds(20)));

  // Broken: logged, and the tokens in force stay.
  ASSERT_NO_FATAL_FAILURE(WriteTokens("newcomer assign,publish sha256:00\n"));
  ASSERT_TRUE(server_->Signal(SIGHUP).ok());
  ASSERT_TRUE(server_
                  ->WaitForStderr("token file reload failed; keeping 1 token",
                                  absl::Seconds(20))
                  .ok())
      << server_->Stderr();
  EXPECT_THAT(server_->Stderr(), HasSubstr("tokens.txt:1: unknown role"));
  EXPECT_EQ(ListWith(newcomer), grpc::StatusCode::OK);
  EXPECT_EQ(ListWith(kAssignToken), grpc::StatusCode::UNAUTHENTICATED);
}

TEST_F(AuthFileTest, StartLogsTokensPerRoleButNeverATokenOrHash) {
  ASSERT_NO_FATAL_FAILURE(WriteTokens(TokenFile()));
  absl::StatusOr<std::unique_ptr<ServerProcess>> server = StartServer();
  ASSERT_TRUE(server.ok()) << server.status();
  const std::string log = (*server)->Stderr();
  EXPECT_THAT(log,
              HasSubstr("5 tokens: assign 2, record 2, results 1, admin 1"));
  EXPECT_THAT(log, ::testing::Not(HasSubstr("sha256:")));
  EXPECT_THAT(log, ::testing::Not(HasSubstr("abexp_")));
  EXPECT_THAT(log, ::testing::Not(HasSubstr("may be read by other users")));
}

TEST_F(AuthFileTest, AFileOthersMayReadIsWarnedAbout) {
  ASSERT_NO_FATAL_FAILURE(WriteTokens(TokenFile()));
  ASSERT_EQ(chmod(tokens_.c_str(), 0644), 0);
  absl::StatusOr<std::unique_ptr<ServerProcess>> server = StartServer();
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_THAT((*server)->Stderr(),
              HasSubstr("may be read by other users (mode 0644)"));
}

TEST_F(AuthFileTest, AnInvalidFileStopsTheStartWithEveryProblem) {
  ASSERT_NO_FATAL_FAILURE(WriteTokens(absl::StrCat(
      TokenFileLine("ops", "admin", kAdminToken), "frontend assign ",
      kAssignToken, "\n", "ops results sha256:", std::string(64, 'F'), "\n")));
  absl::StatusOr<std::unique_ptr<ServerProcess>> server = StartServer();
  ASSERT_FALSE(server.ok());
  const std::string message(server.status().message());
  EXPECT_THAT(message, HasSubstr("exited with status 1"));
  EXPECT_THAT(message, HasSubstr("tokens.txt:2: this line holds a token"));
  EXPECT_THAT(message, HasSubstr("tokens.txt:3: name ops is already used"));
  EXPECT_THAT(message, HasSubstr("not starting: fix the token file"));
  EXPECT_THAT(message, ::testing::Not(HasSubstr(kAssignToken)));
}

}  // namespace
}  // namespace abexp::testing
