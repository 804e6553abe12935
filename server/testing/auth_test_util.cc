#include "server/testing/auth_test_util.h"

#include <cstdio>
#include <cstdlib>
#include <future>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "grpc/reflection/v1alpha/reflection.grpc.pb.h"
#include "grpcpp/generic/generic_stub.h"
#include "server/testing/server_process.h"

namespace abexp::testing {

namespace reflection = ::grpc::reflection::v1alpha;

std::string Bearer(const std::string& token) { return "Bearer " + token; }

std::string MakeToken(char fill, const std::string& tag) {
  return absl::StrCat("abexp_", std::string(43 - tag.size(), fill), tag);
}

std::string TokenFileLine(const std::string& name, const std::string& roles,
                          const std::string& token) {
  TempDir dir;
  const std::string path = dir.Write("token", token);
  std::string out;
  absl::StatusOr<int> code = RunProcess({"sha256sum", path}, &out, nullptr);
  if (!code.ok() || *code != 0) {
    std::fprintf(stderr, "sha256sum %s failed\n", path.c_str());
    std::abort();
  }
  std::vector<std::string> fields = absl::StrSplit(out, ' ');
  return absl::StrCat(name, " ", roles, " sha256:", fields[0], "\n");
}

void PrepareContext(const Authorization& authorization,
                    grpc::ClientContext* context) {
  if (authorization.has_value()) {
    context->AddMetadata("authorization", *authorization);
  }
  context->set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
}

grpc::Status Reflect(
    const std::shared_ptr<grpc::Channel>& channel,
    const Authorization& authorization,
    const std::vector<reflection::ServerReflectionRequest>& requests,
    std::vector<reflection::ServerReflectionResponse>* responses) {
  auto stub = reflection::ServerReflection::NewStub(channel);
  grpc::ClientContext context;
  PrepareContext(authorization, &context);
  auto stream = stub->ServerReflectionInfo(&context);
  responses->clear();
  for (const reflection::ServerReflectionRequest& request : requests) {
    if (!stream->Write(request)) break;
    reflection::ServerReflectionResponse response;
    if (!stream->Read(&response)) break;
    responses->push_back(std::move(response));
  }
  stream->WritesDone();
  return stream->Finish();
}

grpc::Status ListServices(const std::shared_ptr<grpc::Channel>& channel,
                          const Authorization& authorization,
                          std::vector<std::string>* names) {
  reflection::ServerReflectionRequest request;
  request.set_list_services("");
  std::vector<reflection::ServerReflectionResponse> responses;
  grpc::Status status = Reflect(channel, authorization, {request}, &responses);
  names->clear();
  for (const reflection::ServerReflectionResponse& response : responses) {
    for (const reflection::ServiceResponse& service :
         response.list_services_response().service()) {
      names->push_back(service.name());
    }
  }
  return status;
}

grpc::Status CheckHealth(const std::shared_ptr<grpc::Channel>& channel,
                         const Authorization& authorization, bool* serving) {
  // grpc.health.v1 has no installed C++ stubs: an empty HealthCheckRequest
  // asks about the whole server, and HealthCheckResponse{status: SERVING}
  // is the bytes 08 01.
  grpc::TemplatedGenericStub<grpc::ByteBuffer, grpc::ByteBuffer> stub(channel);
  grpc::Slice empty{std::string()};
  grpc::ByteBuffer request(&empty, 1);
  grpc::ByteBuffer response;
  grpc::ClientContext context;
  PrepareContext(authorization, &context);
  std::promise<grpc::Status> done;
  stub.UnaryCall(&context, "/grpc.health.v1.Health/Check", grpc::StubOptions(),
                 &request, &response,
                 [&done](grpc::Status s) { done.set_value(std::move(s)); });
  grpc::Status status = done.get_future().get();
  std::vector<grpc::Slice> slices;
  (void)response.Dump(&slices);
  std::string bytes;
  for (const grpc::Slice& s : slices) {
    bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  *serving = status.ok() && bytes == std::string("\x08\x01", 2);
  return status;
}

}  // namespace abexp::testing
