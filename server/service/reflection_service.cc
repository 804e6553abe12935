#include "server/service/reflection_service.h"

#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/descriptor.pb.h"
#include "server/core/error_text.h"
#include "server/core/token_table.h"
#include "server/service/unary_call.h"

namespace abexp {
namespace {

namespace reflection = ::grpc::reflection::v1alpha;
using ::google::protobuf::Descriptor;
using ::google::protobuf::FieldDescriptor;
using ::google::protobuf::FileDescriptor;

constexpr char kRpc[] =
    "grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo";

void SetError(absl::StatusCode code, const std::string& message,
              reflection::ServerReflectionResponse* response) {
  reflection::ErrorResponse* error = response->mutable_error_response();
  error->set_error_code(static_cast<int32_t>(code));
  error->set_error_message(message);
}

// Answers with `file` and, after it, each file it depends on, transitively,
// each once: a client can then build every type the file uses. When `file`
// is null, answers NOT_FOUND with `missing`.
void AnswerWithFile(const FileDescriptor* file, const std::string& missing,
                    reflection::ServerReflectionResponse* response) {
  if (file == nullptr) {
    SetError(absl::StatusCode::kNotFound, missing, response);
    return;
  }
  reflection::FileDescriptorResponse* files =
      response->mutable_file_descriptor_response();
  absl::flat_hash_set<const FileDescriptor*> added = {file};
  std::vector<const FileDescriptor*> pending = {file};
  while (!pending.empty()) {
    const FileDescriptor* next = pending.back();
    pending.pop_back();
    google::protobuf::FileDescriptorProto proto;
    next->CopyTo(&proto);
    proto.SerializeToString(files->add_file_descriptor_proto());
    for (int i = next->dependency_count() - 1; i >= 0; --i) {
      if (added.insert(next->dependency(i)).second) {
        pending.push_back(next->dependency(i));
      }
    }
  }
}

// The reactor of one stream: reads a request, writes its response, until
// the client closes its side.
class ReflectionStream final
    : public grpc::ServerBidiReactor<reflection::ServerReflectionRequest,
                                     reflection::ServerReflectionResponse> {
 public:
  // Ends the stream at once with `admitted` when it is not OK.
  ReflectionStream(const ReflectionService* service,
                   const absl::Status& admitted)
      : service_(service) {
    if (!admitted.ok()) {
      Finish(ToGrpcStatus(admitted));
      return;
    }
    StartRead(&request_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {  // the client is done
      Finish(grpc::Status::OK);
      return;
    }
    response_.Clear();
    service_->Answer(request_, &response_);
    StartWrite(&response_);
  }

  void OnWriteDone(bool ok) override {
    if (!ok) {
      Finish(grpc::Status(grpc::StatusCode::CANCELLED,
                          "the reflection response could not be sent; the "
                          "client has gone"));
      return;
    }
    request_.Clear();
    StartRead(&request_);
  }

  void OnDone() override { delete this; }

 private:
  const ReflectionService* const service_;
  reflection::ServerReflectionRequest request_;
  reflection::ServerReflectionResponse response_;
};

}  // namespace

ReflectionService::ReflectionService(
    std::vector<std::string> services, const CallAuthorizer* authorizer,
    const google::protobuf::DescriptorPool* pool)
    : services_(std::move(services)), authorizer_(authorizer), pool_(pool) {}

grpc::ServerBidiReactor<reflection::ServerReflectionRequest,
                        reflection::ServerReflectionResponse>*
ReflectionService::ServerReflectionInfo(grpc::CallbackServerContext* context) {
  absl::Status admitted = absl::OkStatus();
  if (authorizer_ != nullptr) {
    admitted = authorizer_->Check(*context, kRoleAdmin, kRpc);
  }
  return new ReflectionStream(this, admitted);
}

void ReflectionService::Answer(
    const reflection::ServerReflectionRequest& request,
    reflection::ServerReflectionResponse* response) const {
  response->set_valid_host(request.host());
  *response->mutable_original_request() = request;
  switch (request.message_request_case()) {
    case reflection::ServerReflectionRequest::kListServices:
      for (const std::string& name : services_) {
        response->mutable_list_services_response()->add_service()->set_name(
            name);
      }
      return;
    case reflection::ServerReflectionRequest::kFileByFilename:
      AnswerWithFile(pool_->FindFileByName(request.file_by_filename()),
                     absl::StrCat("no file named \"",
                                  ClipForMessage(request.file_by_filename()),
                                  "\" on this server; list_services and "
                                  "file_containing_symbol find the files"),
                     response);
      return;
    case reflection::ServerReflectionRequest::kFileContainingSymbol:
      AnswerWithFile(
          pool_->FindFileContainingSymbol(request.file_containing_symbol()),
          absl::StrCat("no symbol \"",
                       ClipForMessage(request.file_containing_symbol()),
                       "\" on this server; give a fully-qualified name, e.g. "
                       "abexp.v1.AssignmentService"),
          response);
      return;
    case reflection::ServerReflectionRequest::kFileContainingExtension: {
      const reflection::ExtensionRequest& wanted =
          request.file_containing_extension();
      const Descriptor* type =
          pool_->FindMessageTypeByName(wanted.containing_type());
      const FieldDescriptor* extension =
          type == nullptr
              ? nullptr
              : pool_->FindExtensionByNumber(type, wanted.extension_number());
      AnswerWithFile(extension == nullptr ? nullptr : extension->file(),
                     absl::StrCat("no extension ", wanted.extension_number(),
                                  " of message type \"",
                                  ClipForMessage(wanted.containing_type()),
                                  "\" on this server"),
                     response);
      return;
    }
    case reflection::ServerReflectionRequest::kAllExtensionNumbersOfType: {
      const Descriptor* type =
          pool_->FindMessageTypeByName(request.all_extension_numbers_of_type());
      if (type == nullptr) {
        SetError(absl::StatusCode::kNotFound,
                 absl::StrCat(
                     "no message type \"",
                     ClipForMessage(request.all_extension_numbers_of_type()),
                     "\" on this server; give a fully-qualified name"),
                 response);
        return;
      }
      std::vector<const FieldDescriptor*> extensions;
      pool_->FindAllExtensions(type, &extensions);
      reflection::ExtensionNumberResponse* numbers =
          response->mutable_all_extension_numbers_response();
      numbers->set_base_type_name(type->full_name());
      for (const FieldDescriptor* extension : extensions) {
        numbers->add_extension_number(extension->number());
      }
      return;
    }
    case reflection::ServerReflectionRequest::MESSAGE_REQUEST_NOT_SET:
      break;
  }
  SetError(absl::StatusCode::kInvalidArgument,
           "the request sets none of file_by_filename, "
           "file_containing_symbol, file_containing_extension, "
           "all_extension_numbers_of_type and list_services; set one",
           response);
}

}  // namespace abexp
