// ReflectionService serves gRPC server reflection
// (grpc.reflection.v1alpha.ServerReflection, the protocol grpcurl and
// other tools use to list a server's services and fetch their descriptors)
// from protobuf's generated descriptor pool. gRPC's own reflection plugin
// cannot be guarded; this one checks the caller first: when tokens are on,
// the stream needs the role admin (call_auth.h), and a caller without it
// gets the stream's status, UNAUTHENTICATED or PERMISSION_DENIED, before
// any answer.
//
// Each request gets one response, in order: list_services the names given
// to the constructor; file_by_filename, file_containing_symbol and
// file_containing_extension the file with every file it depends on,
// transitively (the file asked for first, each file once); and
// all_extension_numbers_of_type. A name the pool does not know is an
// error_response NOT_FOUND; the stream goes on.
//
// Thread-safe: streams may run concurrently.
#ifndef ABEXP_SERVER_SERVICE_REFLECTION_SERVICE_H_
#define ABEXP_SERVER_SERVICE_REFLECTION_SERVICE_H_

#include <string>
#include <vector>

#include "google/protobuf/descriptor.h"
#include "grpc/reflection/v1alpha/reflection.grpc.pb.h"
#include "grpc/reflection/v1alpha/reflection.pb.h"
#include "grpcpp/grpcpp.h"
#include "server/service/call_auth.h"

namespace abexp {

class ReflectionService final
    : public grpc::reflection::v1alpha::ServerReflection::CallbackService {
 public:
  // `services`: the full names of the server's services, as list_services
  // answers them. `authorizer`: who may use reflection (null: everyone).
  // `pool`: where descriptors are looked up. Default: the generated pool,
  // which holds every .proto whose generated code the binary links.
  // REQUIRES: authorizer and pool outlive this service.
  ReflectionService(std::vector<std::string> services,
                    const CallAuthorizer* authorizer,
                    const google::protobuf::DescriptorPool* pool =
                        google::protobuf::DescriptorPool::generated_pool());

  ReflectionService(const ReflectionService&) = delete;
  ReflectionService& operator=(const ReflectionService&) = delete;

  grpc::ServerBidiReactor<grpc::reflection::v1alpha::ServerReflectionRequest,
                          grpc::reflection::v1alpha::ServerReflectionResponse>*
  ServerReflectionInfo(grpc::CallbackServerContext* context) override;

  // The response to one request, without a server.
  void Answer(
      const grpc::reflection::v1alpha::ServerReflectionRequest& request,
      grpc::reflection::v1alpha::ServerReflectionResponse* response) const;

 private:
  const std::vector<std::string> services_;
  const CallAuthorizer* const authorizer_;  // not owned; may be null
  const google::protobuf::DescriptorPool* const pool_;  // not owned
};

}  // namespace abexp

#endif  // ABEXP_SERVER_SERVICE_REFLECTION_SERVICE_H_
