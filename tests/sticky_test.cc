// Sticky experiments end to end: a real abexp-server, a real redis-server
// and real gRPC on loopback. Units exposed through RecordExposures keep their
// variant when the weights change (config rewritten, SIGHUP), units never
// exposed follow the new weights, a non-sticky experiment moves units, and
// with Redis killed or hung Assign still answers with computed variants.
//
// Expected variants come from the bucketing spec (docs/bucketing.md),
// computed here with XXH3 directly: weights w1:w2 split the variant buckets
// at 10000 * w1 / (w1 + w2).
#include <signal.h>
#include <xxhash.h>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "abexp/v1/assignment.grpc.pb.h"
#include "abexp/v1/recording.grpc.pb.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "client/client.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/message_differencer.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "server/testing/recording_test_util.h"

namespace abexp {
namespace {

using ::abexp::testing::Eventually;
using ::abexp::testing::FindAssignment;
using ::abexp::testing::FindStep;
using ::abexp::testing::RecordingServerTest;
using ::abexp::testing::SetDeadline;
using ::abexp::testing::User;
using ::testing::HasSubstr;

// `paint` is sticky and sets color; `sizing` is not and sets size. Both are
// split w1:w2.
std::string ConfigYaml(int w1, int w2) {
  return absl::StrFormat(R"yaml(
features:
  - {key: color, type: string, default: grey}
  - {key: size, type: number, default: 0}
experiments:
  - key: paint
    status: running
    sticky: true
    variants:
      - {key: red, weight: %d, features: {color: red}}
      - {key: blue, weight: %d, features: {color: blue}}
  - key: sizing
    status: running
    variants:
      - {key: small, weight: %d, features: {size: 1}}
      - {key: large, weight: %d, features: {size: 2}}
)yaml",
                         w1, w2, w1, w2);
}

// docs/bucketing.md, sections 1 and 2.
uint32_t SpecVariantBucket(const std::string& salt, const std::string& id) {
  std::string input;
  for (const std::string& field : {std::string("variant"), salt, id}) {
    const uint32_t n = static_cast<uint32_t>(field.size());
    for (int i = 0; i < 4; ++i)
      input.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
    input += field;
  }
  return static_cast<uint32_t>(XXH3_64bits(input.data(), input.size()) % 10000);
}

std::string BySpec(const std::string& salt, const std::string& id, int w1,
                   int w2, const std::string& first,
                   const std::string& second) {
  const uint32_t split = static_cast<uint32_t>(10000 * w1 / (w1 + w2));
  return SpecVariantBucket(salt, id) < split ? first : second;
}

std::string VersionOf(const std::string& text) {
  return absl::StrFormat("%016x", XXH3_64bits(text.data(), text.size()));
}

class StickyTest : public RecordingServerTest {
 protected:
  // The server keeps its keys under its default prefix. Calls have the
  // fixture's generous deadline (call_timeout_): a hung Redis holds a call
  // for its 2s timeout, and the machine may be loaded.
  StickyTest() : RecordingServerTest(ConfigYaml(50, 50), /*redis_prefix=*/"") {
    // Every acknowledged exposure must survive the Redis kill below.
    redis_options_.appendfsync = "always";
  }

  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(RecordingServerTest::SetUp());
    ASSERT_NO_FATAL_FAILURE(
        StartServer({absl::StrCat("--sticky_read_budget=", budget_)}));
  }

  // How long the server may wait for a recorded variant. These tests check
  // stickiness on a machine that may be loaded (sanitizers, parallel
  // tests), where a read can take longer than the default 5ms; the budget
  // itself is StickyBudgetTest's.
  std::string budget_ = "2s";

  v1::AssignResponse Assign(const std::string& id) {
    v1::AssignRequest request;
    *request.mutable_unit() = User(id);
    v1::AssignResponse response;
    grpc::ClientContext context;
    SetDeadline(&context, call_timeout_);
    grpc::Status s = assign_->Assign(&context, request, &response);
    EXPECT_TRUE(s.ok()) << id << ": " << s.error_message();
    return response;
  }

  v1::ExplainAssignmentResponse Explain(const std::string& id,
                                        const std::string& experiment) {
    v1::ExplainAssignmentRequest request;
    *request.mutable_unit() = User(id);
    request.set_experiment_key(experiment);
    v1::ExplainAssignmentResponse response;
    grpc::ClientContext context;
    SetDeadline(&context, call_timeout_);
    grpc::Status s = assign_->ExplainAssignment(&context, request, &response);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return response;
  }

  // Records, through RecordExposures, that each unit was shown the variant
  // given for it; every exposure must be RECORDED.
  void Expose(const std::string& experiment,
              const std::map<std::string, std::string>& variant_by_unit) {
    v1::RecordExposuresRequest request;
    for (const auto& [id, variant] : variant_by_unit) {
      v1::ExposureRecord* x = request.add_exposures();
      x->set_experiment_key(experiment);
      *x->mutable_unit() = User(id);
      x->set_variant_key(variant);
    }
    v1::RecordExposuresResponse response;
    grpc::Status s = RecordExposures(request, &response);
    ASSERT_TRUE(s.ok()) << s.error_message();
    ASSERT_EQ(response.results_size(), request.exposures_size());
    for (int i = 0; i < response.results_size(); ++i) {
      ASSERT_EQ(response.results(i).outcome(), v1::RECORD_OUTCOME_RECORDED)
          << request.exposures(i).DebugString();
    }
  }

  // Rewrites the config file and reloads it with SIGHUP.
  void ReloadWith(const std::string& yaml) {
    dir_.Write("experiments.yaml", yaml);
    ASSERT_TRUE(server_->Signal(SIGHUP).ok());
    absl::Status reloaded = server_->WaitForStderr(
        absl::StrCat("config reloaded version=", VersionOf(yaml)),
        absl::Seconds(30));
    ASSERT_TRUE(reloaded.ok()) << reloaded;
  }

  // Polls Assign until `id` gets `variant` of paint as STICKY again, e.g.
  // after Redis came back (the server reconnects with backoff).
  void WaitUntilSticky(const std::string& id, const std::string& variant) {
    std::optional<v1::Assignment> paint;
    Eventually(
        [&] {
          paint = FindAssignment(Assign(id), "paint");
          return paint && paint->reason() == v1::ASSIGNMENT_REASON_STICKY;
        },
        absl::Seconds(60), absl::Milliseconds(200));
    ASSERT_TRUE(paint.has_value());
    ASSERT_EQ(paint->reason(), v1::ASSIGNMENT_REASON_STICKY)
        << "stickiness did not return within 60s; server stderr:\n"
        << server_->Stderr();
    EXPECT_EQ(paint->variant_key(), variant);
  }

  // Asserts that every unit of `shown` is assigned its variant of paint, as
  // STICKY.
  void ExpectStickyPaint(const std::map<std::string, std::string>& shown) {
    for (const auto& [id, variant] : shown) {
      const std::optional<v1::Assignment> paint =
          FindAssignment(Assign(id), "paint");
      ASSERT_TRUE(paint.has_value()) << id;
      EXPECT_EQ(paint->variant_key(), variant) << id;
      EXPECT_EQ(paint->reason(), v1::ASSIGNMENT_REASON_STICKY) << id;
    }
  }

  // Asserts that each unit of `ids` is assigned the variant of paint the
  // spec computes at 50:50, as STICKY_UNREAD: what Assign answers when it
  // cannot read the recorded variants.
  void ExpectComputedPaint(const std::vector<std::string>& ids) {
    for (const std::string& id : ids) {
      const std::optional<v1::Assignment> paint =
          FindAssignment(Assign(id), "paint");
      ASSERT_TRUE(paint.has_value()) << id;
      EXPECT_EQ(paint->variant_key(),
                BySpec("paint", id, 50, 50, "red", "blue"))
          << id;
      EXPECT_EQ(paint->reason(), v1::ASSIGNMENT_REASON_STICKY_UNREAD) << id;
    }
  }
};

TEST_F(StickyTest,
       ExposedUnitsKeepTheirVariantWhenWeightsChangeOthersFollowThem) {
  // u0..u199 are shown what Assign gives them; u200..u399 never are.
  std::map<std::string, std::string> paint_shown, sizing_shown;
  for (int i = 0; i < 200; ++i) {
    const std::string id = absl::StrCat("u", i);
    const v1::AssignResponse r = Assign(id);
    ASSERT_TRUE(FindAssignment(r, "paint").has_value()) << id;
    ASSERT_TRUE(FindAssignment(r, "sizing").has_value()) << id;
    paint_shown[id] = FindAssignment(r, "paint")->variant_key();
    sizing_shown[id] = FindAssignment(r, "sizing")->variant_key();
  }
  Expose("paint", paint_shown);
  Expose("sizing", sizing_shown);

  ReloadWith(ConfigYaml(10, 90));
  int paint_kept_against_hash = 0, sizing_moved = 0;
  for (int i = 0; i < 400; ++i) {
    const std::string id = absl::StrCat("u", i);
    const v1::AssignResponse r = Assign(id);
    const std::optional<v1::Assignment> paint = FindAssignment(r, "paint");
    const std::optional<v1::Assignment> sizing = FindAssignment(r, "sizing");
    ASSERT_TRUE(paint.has_value()) << id;
    ASSERT_TRUE(sizing.has_value()) << id;
    const std::string paint_hash = BySpec("paint", id, 10, 90, "red", "blue");
    const std::string sizing_hash =
        BySpec("sizing", id, 10, 90, "small", "large");
    if (i < 200) {
      EXPECT_EQ(paint->variant_key(), paint_shown[id]) << id;
      EXPECT_EQ(paint->reason(), v1::ASSIGNMENT_REASON_STICKY) << id;
      paint_kept_against_hash += paint_shown[id] != paint_hash;
      sizing_moved += sizing_shown[id] != sizing_hash;
    } else {
      EXPECT_EQ(paint->variant_key(), paint_hash) << id;
      EXPECT_EQ(paint->reason(), v1::ASSIGNMENT_REASON_BUCKETED) << id;
    }
    const v1::ResolvedFeature* color = FindFeature(r, "color");
    ASSERT_NE(color, nullptr) << id;
    EXPECT_EQ(color->value().string_value(), paint->variant_key()) << id;
    EXPECT_EQ(sizing->variant_key(), sizing_hash) << id;
    EXPECT_EQ(sizing->reason(), v1::ASSIGNMENT_REASON_BUCKETED) << id;
  }
  // Moving the split from 5000 to 1000 moves about 40% of the units.
  EXPECT_GT(paint_kept_against_hash, 40);
  EXPECT_GT(sizing_moved, 40);

  // BatchAssign and ExplainAssignment give the same answers.
  v1::BatchAssignRequest batch_request;
  for (int i = 0; i < 400; i += 4)
    *batch_request.add_units() = User(absl::StrCat("u", i));
  v1::BatchAssignResponse batch;
  grpc::ClientContext context;
  SetDeadline(&context, call_timeout_);
  grpc::Status s = assign_->BatchAssign(&context, batch_request, &batch);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(batch.results_size(), 100);
  for (int k = 0; k < 100; ++k) {
    const std::string id = absl::StrCat("u", 4 * k);
    const v1::AssignResponse single = Assign(id);
    EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(
        batch.results(k), single))
        << id << "\nbatch: " << batch.results(k).DebugString()
        << "\nsingle: " << single.DebugString();
    const v1::ExplainAssignmentResponse x = Explain(id, "paint");
    EXPECT_EQ(x.variant_key(), FindAssignment(single, "paint")->variant_key())
        << id;
    EXPECT_EQ(x.reason(), FindAssignment(single, "paint")->reason()) << id;
  }
}

TEST_F(StickyTest,
       WithRedisKilledAssignAnswersComputedVariantsAndStickinessReturns) {
  // Variants chosen here, not by the hash, so the record visibly decides.
  std::map<std::string, std::string> shown;
  for (int i = 0; i < 100; ++i)
    shown[absl::StrCat("u", i)] = i % 2 ? "blue" : "red";
  Expose("paint", shown);
  ASSERT_NO_FATAL_FAILURE(ExpectStickyPaint(shown));

  ASSERT_TRUE(redis_->Kill().ok());
  std::vector<std::string> ids;
  for (const auto& [id, variant] : shown) ids.push_back(id);
  ASSERT_NO_FATAL_FAILURE(ExpectComputedPaint(ids));
  const std::optional<v1::ExplainStep> step =
      FindStep(Explain("u1", "paint"), "sticky");
  ASSERT_TRUE(step.has_value());
  EXPECT_FALSE(step->passed());
  EXPECT_THAT(step->detail(), HasSubstr("UNAVAILABLE"));
  EXPECT_TRUE(server_
                  ->WaitForStderr("warning: sticky assignment could not read",
                                  absl::Seconds(30))
                  .ok())
      << server_->Stderr();

  ASSERT_TRUE(redis_->Restart().ok()) << redis_->Log();
  WaitUntilSticky("u1", "blue");
  ASSERT_NO_FATAL_FAILURE(ExpectStickyPaint(shown));
}

TEST_F(StickyTest, WithRedisHungAssignStillAnswers) {
  Expose("paint", {{"u1", "blue"}, {"u2", "red"}});
  WaitUntilSticky("u1", "blue");
  ASSERT_TRUE(redis_->Signal(SIGSTOP).ok());
  ASSERT_NO_FATAL_FAILURE(ExpectComputedPaint({"u1", "u2", "u3"}));
  ASSERT_TRUE(redis_->Signal(SIGCONT).ok());
  WaitUntilSticky("u1", "blue");
  WaitUntilSticky("u2", "red");
}

// With the default-sized budget, a frozen Redis holds no sticky call for
// its command timeout (2s): each answers within a deadline far shorter.
class StickyBudgetTest : public StickyTest {
 protected:
  StickyBudgetTest() { budget_ = "20ms"; }

  // Assign for `id` with a 1s deadline, below the server's 2s Redis command
  // timeout and far above its 20ms budget.
  grpc::Status AssignWithin1s(const std::string& id,
                              v1::AssignResponse* response) {
    v1::AssignRequest request;
    *request.mutable_unit() = User(id);
    grpc::ClientContext context;
    SetDeadline(&context, absl::Seconds(1));
    return assign_->Assign(&context, request, response);
  }
};

TEST_F(StickyBudgetTest, WithRedisFrozenStickyCallsAnswerWithinTheirDeadline) {
  std::map<std::string, std::string> shown;
  for (int i = 0; i < 20; ++i) shown[absl::StrCat("u", i)] = "blue";
  Expose("paint", shown);
  WaitUntilSticky("u1", "blue");
  ASSERT_TRUE(redis_->Signal(SIGSTOP).ok());
  // Each call is a new chance to read (a pause starts only once a read has
  // failed), so the first ones wait for Redis within the budget.
  for (int i = 0; i < 20; ++i) {
    const std::string id = absl::StrCat("u", i);
    v1::AssignResponse response;
    const grpc::Status s = AssignWithin1s(id, &response);
    ASSERT_TRUE(s.ok()) << id << ": " << s.error_code() << " "
                        << s.error_message();
    const std::optional<v1::Assignment> paint =
        FindAssignment(response, "paint");
    ASSERT_TRUE(paint.has_value()) << id;
    EXPECT_EQ(paint->variant_key(), BySpec("paint", id, 50, 50, "red", "blue"))
        << id;
    EXPECT_EQ(paint->reason(), v1::ASSIGNMENT_REASON_STICKY_UNREAD) << id;
  }
  v1::ExplainAssignmentRequest explain_request;
  *explain_request.mutable_unit() = User("u1");
  explain_request.set_experiment_key("paint");
  v1::ExplainAssignmentResponse explained;
  grpc::ClientContext context;
  SetDeadline(&context, absl::Seconds(1));
  const grpc::Status s =
      assign_->ExplainAssignment(&context, explain_request, &explained);
  ASSERT_TRUE(s.ok()) << s.error_code() << " " << s.error_message();
  EXPECT_EQ(explained.reason(), v1::ASSIGNMENT_REASON_STICKY_UNREAD);
  const std::optional<v1::ExplainStep> step = FindStep(explained, "sticky");
  ASSERT_TRUE(step.has_value());
  EXPECT_FALSE(step->passed());

  ASSERT_TRUE(redis_->Signal(SIGCONT).ok());
  WaitUntilSticky("u1", "blue");
}

}  // namespace
}  // namespace abexp
