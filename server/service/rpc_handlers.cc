#include "server/service/rpc_handlers.h"

#include <cstdio>
#include <mutex>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "google/protobuf/stubs/logging.h"
#include "grpcpp/support/proto_buffer_reader.h"
#include "server/core/error_text.h"

namespace abexp {
namespace {

// While ParseRequest parses on this thread: the first protobuf log line of
// the parse, which is how protobuf tells an invalid UTF-8 string apart.
thread_local std::string* parse_log = nullptr;

constexpr absl::Duration kProtobufLogInterval = absl::Seconds(10);

struct LogLimit {
  absl::Mutex mu;
  absl::Time next_line ABSL_GUARDED_BY(mu) = absl::InfinitePast();
  int64_t left_out ABSL_GUARDED_BY(mu) = 0;
};

void LimitedProtobufLog(google::protobuf::LogLevel level, const char* filename,
                        int line, const std::string& message) {
  if (parse_log != nullptr && parse_log->empty()) *parse_log = message;
  static LogLimit* const limit = new LogLimit();
  int64_t left_out = 0;
  if (level != google::protobuf::LOGLEVEL_FATAL) {
    const absl::Time now = absl::Now();
    absl::MutexLock lock(&limit->mu);
    if (now < limit->next_line) {
      ++limit->left_out;
      return;
    }
    limit->next_line = now + kProtobufLogInterval;
    left_out = limit->left_out;
    limit->left_out = 0;
  }
  static const char* const kLevels[] = {"INFO", "WARNING", "ERROR", "FATAL"};
  const std::string suffix =
      left_out > 0
          ? absl::StrCat(" (", left_out, " more libprotobuf lines left out in ",
                         "the last ",
                         absl::FormatDuration(kProtobufLogInterval), ")")
          : std::string();
  std::fprintf(stderr, "[libprotobuf %s %s:%d] %s%s\n", kLevels[level],
               filename, line, message.c_str(), suffix.c_str());
}

}  // namespace

void InstallProtobufLogLimiter() {
  static std::once_flag once;
  std::call_once(once,
                 [] { google::protobuf::SetLogHandler(&LimitedProtobufLog); });
}

absl::Status ParseRequest(const grpc::ByteBuffer& bytes,
                          google::protobuf::Message* message) {
  InstallProtobufLogLimiter();
  // The reader takes a mutable buffer but only reads it (a compressed one is
  // inflated into a buffer of the reader's own), as gRPC's own parse of a
  // typed method's request does; copying it would cost a malloc per call.
  auto* buffer = const_cast<grpc::ByteBuffer*>(&bytes);
  std::string logged;
  parse_log = &logged;
  bool parsed = false;
  {
    grpc::ProtoBufferReader reader(buffer);
    parsed = reader.status().ok() && message->ParseFromZeroCopyStream(&reader);
  }
  parse_log = nullptr;
  if (parsed) return absl::OkStatus();
  const std::string& type = message->GetDescriptor()->full_name();
  // protobuf logs "String field 'abexp.v1.Unit.IdsEntry.value' contains
  // invalid UTF-8 data when parsing a protocol buffer. ..."
  constexpr absl::string_view kUtf8 = "String field '";
  if (absl::StartsWith(logged, kUtf8) &&
      absl::StrContains(logged, "invalid UTF-8")) {
    const size_t end = logged.find('\'', kUtf8.size());
    return absl::InvalidArgumentError(absl::StrCat(
        "the request could not be parsed as ", type, ": string field ",
        ClipForMessage(logged.substr(kUtf8.size(), end - kUtf8.size())),
        " is not valid UTF-8; send text as UTF-8 (proto3 strings must be)"));
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "the request could not be parsed as ", type, ": its ", bytes.Length(),
      " bytes are not a valid protobuf encoding of it; send a ", type,
      " serialized by a protobuf library from proto/abexp/v1"));
}

absl::StatusOr<Unit> ConvertUnit(const v1::Unit& proto,
                                 absl::string_view field) {
  Unit unit;
  // Sized once: growing a flat_hash_map rehashes every entry so far, four
  // times for a dozen attributes.
  unit.ids.reserve(proto.ids_size());
  unit.attributes.reserve(proto.attributes_size());
  for (const auto& [type, id] : proto.ids()) unit.ids.try_emplace(type, id);
  for (const auto& [name, value] : proto.attributes()) {
    switch (value.kind_case()) {
      case v1::AttributeValue::kStringValue:
        unit.attributes.try_emplace(name, value.string_value());
        break;
      case v1::AttributeValue::kNumberValue:
        unit.attributes.try_emplace(name, value.number_value());
        break;
      case v1::AttributeValue::kBoolValue:
        unit.attributes.try_emplace(name, value.bool_value());
        break;
      case v1::AttributeValue::KIND_NOT_SET:
        return absl::InvalidArgumentError(absl::StrCat(
            field, ".attributes[", ClipForMessage(name),
            "] has no value; set string_value, number_value or bool_value, or "
            "leave the attribute out"));
    }
  }
  return unit;
}

}  // namespace abexp
