// Server reflection (grpc.reflection.v1alpha) on a real abexp-server, used
// the way grpcurl uses it: list the services, then fetch the file that
// defines one, with its dependencies, and build its descriptors from the
// returned FileDescriptorProtos. (Who may use it: tests/auth_test.cc.)
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/descriptor.pb.h"
#include "google/protobuf/descriptor_database.h"
#include "grpc/reflection/v1alpha/reflection.pb.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "server/testing/auth_test_util.h"
#include "server/testing/server_process.h"

namespace abexp::testing {
namespace {

namespace reflection = ::grpc::reflection::v1alpha;
using ::testing::IsSupersetOf;

constexpr char kConfig[] = R"yaml(
experiments:
  - key: checkout
    status: running
    variants:
      - {key: control, weight: 1}
      - {key: treatment, weight: 1}
)yaml";

constexpr int kNotFound = 5;

class ReflectionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<ServerProcess>> server =
        ServerProcess::Start(dir_.Write("experiments.yaml", kConfig),
                             {"--redis=127.0.0.1:1"});
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    channel_ = grpc::CreateChannel(server_->address(),
                                   grpc::InsecureChannelCredentials());
  }

  // One stream with `requests`; a test failure unless it ends OK with a
  // response to each.
  std::vector<reflection::ServerReflectionResponse> Ask(
      const std::vector<reflection::ServerReflectionRequest>& requests) {
    std::vector<reflection::ServerReflectionResponse> responses;
    grpc::Status status = Reflect(channel_, std::nullopt, requests, &responses);
    EXPECT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(responses.size(), requests.size());
    return responses;
  }

  TempDir dir_;
  std::unique_ptr<ServerProcess> server_;
  std::shared_ptr<grpc::Channel> channel_;
};

reflection::ServerReflectionRequest Symbol(const std::string& name) {
  reflection::ServerReflectionRequest request;
  request.set_file_containing_symbol(name);
  return request;
}

TEST_F(ReflectionTest, ListsTheServicesThenDescribesOneAsGrpcurlDoes) {
  std::vector<std::string> services;
  grpc::Status status = ListServices(channel_, std::nullopt, &services);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_THAT(
      services,
      IsSupersetOf({"abexp.v1.AssignmentService", "abexp.v1.RecordingService",
                    "abexp.v1.ResultsService", "grpc.health.v1.Health",
                    "grpc.reflection.v1alpha.ServerReflection"}));

  std::vector<reflection::ServerReflectionResponse> responses =
      Ask({Symbol("abexp.v1.RecordingService")});
  ASSERT_EQ(responses.size(), 1u);
  const auto& files =
      responses[0].file_descriptor_response().file_descriptor_proto();
  // The defining file first, then what it imports, transitively, each once.
  google::protobuf::SimpleDescriptorDatabase database;
  std::vector<std::string> names;
  for (const std::string& bytes : files) {
    google::protobuf::FileDescriptorProto file;
    ASSERT_TRUE(file.ParseFromString(bytes));
    names.push_back(file.name());
    ASSERT_TRUE(database.Add(file)) << file.name();
  }
  ASSERT_FALSE(names.empty());
  EXPECT_EQ(names[0], "abexp/v1/recording.proto");
  EXPECT_THAT(names, IsSupersetOf({"abexp/v1/assignment.proto",
                                   "google/protobuf/timestamp.proto"}));
  EXPECT_EQ(std::set<std::string>(names.begin(), names.end()).size(),
            names.size());

  // A client can build every type of the service from these alone.
  google::protobuf::DescriptorPool pool(&database);
  const google::protobuf::ServiceDescriptor* service =
      pool.FindServiceByName("abexp.v1.RecordingService");
  ASSERT_NE(service, nullptr);
  const google::protobuf::MethodDescriptor* method =
      service->FindMethodByName("RecordEvents");
  ASSERT_NE(method, nullptr);
  EXPECT_EQ(method->input_type()->full_name(), "abexp.v1.RecordEventsRequest");
  const google::protobuf::FieldDescriptor* events =
      method->input_type()->FindFieldByName("events");
  ASSERT_NE(events, nullptr);
  // Through the dependencies: EventRecord's unit (assignment.proto) and time
  // (timestamp.proto).
  const google::protobuf::Descriptor* event = events->message_type();
  ASSERT_NE(event, nullptr);
  EXPECT_EQ(event->FindFieldByName("unit")->message_type()->full_name(),
            "abexp.v1.Unit");
  EXPECT_EQ(event->FindFieldByName("time")->message_type()->full_name(),
            "google.protobuf.Timestamp");
}

TEST_F(ReflectionTest,
       AnswersEachRequestOfAStreamInOrderAndUnknownNamesNotFound) {
  std::vector<reflection::ServerReflectionRequest> requests(6);
  requests[0].set_file_by_filename("abexp/v1/assignment.proto");
  requests[1] = Symbol("abexp.v1.NoSuchMessage");
  requests[2].mutable_file_containing_extension()->set_containing_type(
      "abexp.v1.AssignRequest");
  requests[2].mutable_file_containing_extension()->set_extension_number(100);
  requests[3].set_all_extension_numbers_of_type("abexp.v1.AssignRequest");
  requests[4].set_all_extension_numbers_of_type("abexp.v1.NoSuchMessage");
  requests[5].set_file_by_filename("abexp/v1/nothing.proto");
  for (auto& request : requests) request.set_host("localhost");

  std::vector<reflection::ServerReflectionResponse> responses = Ask(requests);
  ASSERT_EQ(responses.size(), requests.size());
  for (size_t i = 0; i < responses.size(); ++i) {
    EXPECT_EQ(responses[i].original_request().SerializeAsString(),
              requests[i].SerializeAsString())
        << i;
    EXPECT_EQ(responses[i].valid_host(), "localhost");
  }
  google::protobuf::FileDescriptorProto file;
  ASSERT_EQ(
      responses[0].file_descriptor_response().file_descriptor_proto_size(), 1)
      << "assignment.proto imports nothing";
  ASSERT_TRUE(file.ParseFromString(
      responses[0].file_descriptor_response().file_descriptor_proto(0)));
  EXPECT_EQ(file.name(), "abexp/v1/assignment.proto");
  EXPECT_EQ(file.package(), "abexp.v1");

  EXPECT_EQ(responses[1].error_response().error_code(), kNotFound);
  EXPECT_THAT(responses[1].error_response().error_message(),
              ::testing::HasSubstr("abexp.v1.NoSuchMessage"));
  EXPECT_EQ(responses[2].error_response().error_code(), kNotFound);
  EXPECT_EQ(responses[3].all_extension_numbers_response().base_type_name(),
            "abexp.v1.AssignRequest");
  EXPECT_EQ(
      responses[3].all_extension_numbers_response().extension_number_size(), 0);
  EXPECT_EQ(responses[4].error_response().error_code(), kNotFound);
  EXPECT_EQ(responses[5].error_response().error_code(), kNotFound);
}

}  // namespace
}  // namespace abexp::testing
