// Output for the `abexp` CLI: readable text (aligned columns) and JSON.
//
// Protos are printed as JSON with protobuf's JSON mapping (snake_case field
// names, defaults included); validate and diff build a google.protobuf.Struct
// so their JSON is well-formed by construction.
//
// Thread-safe: the functions share no state.
#ifndef ABEXP_CLIENT_CLI_FORMAT_H_
#define ABEXP_CLIENT_CLI_FORMAT_H_

#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "abexp/v1/assignment.pb.h"
#include "abexp/v1/recording.pb.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/message.h"
#include "google/protobuf/struct.pb.h"
#include "server/core/config_diff.h"
#include "server/core/config_parser.h"

namespace abexp::cli {

// Rows printed with each column padded to its widest cell, two spaces apart.
class Table {
 public:
  void AddRow(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  bool empty() const { return rows_.empty(); }
  // Each row on its own line, prefixed by `indent`.
  void Print(std::ostream& out, const std::string& indent = "") const;

 private:
  std::vector<std::vector<std::string>> rows_;
};

// The message as indented JSON followed by a newline, with proto field names,
// default values printed, and map and Struct keys in sorted order (the same
// input always prints the same bytes).
std::string ToJson(const google::protobuf::Message& message);

// Values for the outputs built as a google.protobuf.Struct. Num(nullopt) is
// JSON null: an undefined figure.
google::protobuf::Value Str(absl::string_view s);
google::protobuf::Value Num(double d);
google::protobuf::Value Num(std::optional<double> d);
google::protobuf::Value Bool(bool b);
google::protobuf::Value Strings(const std::vector<std::string>& items);

// A feature value as text: true, 1.5, "text", {"a":1}.
std::string FormatValue(const v1::FeatureValue& value);

void PrintAssign(const v1::AssignResponse& response, std::ostream& out);
void PrintBatchAssign(const v1::BatchAssignResponse& response,
                      std::ostream& out);
void PrintExplain(const v1::ExplainAssignmentResponse& response,
                  std::ostream& out);
void PrintExperimentList(const v1::ListExperimentsResponse& response,
                         std::ostream& out);
void PrintExperiment(const v1::Experiment& experiment, std::ostream& out);

// `abexp track` / `abexp expose`: one line per recorded item saying its
// outcome (and why it was ignored), then the config version.
void PrintRecordResults(
    const google::protobuf::RepeatedPtrField<v1::RecordResult>& results,
    const std::string& config_version, std::ostream& out);

// `abexp validate`: "FILE: OK (...)" plus warnings, or every diagnostic.
void PrintValidate(const std::string& path, const ParseResult& result,
                   std::ostream& out);
std::string ValidateJson(const std::string& path, const ParseResult& result);

// `abexp diff`: one line per experiment, notes, and a verdict line.
void PrintDiff(const ConfigDiff& diff, std::ostream& out);
std::string DiffJson(const ConfigDiff& diff);

}  // namespace abexp::cli

#endif  // ABEXP_CLIENT_CLI_FORMAT_H_
