// abexp: the command line for product teams and analysts.
//
//   abexp assign --id user_id=u-123 --attr country=CN
//   abexp explain one_page_checkout --id user_id=u-123
//   abexp experiments list | experiments get KEY
//   abexp track --id user_id=u-123 --event order_completed --value 59.90
//   abexp expose --experiment one_page_checkout --variant treatment --id
//   user_id=u-123 abexp validate FILE abexp diff OLD NEW abexp stats
//   proportions --control 120/1000 --treatment 140/1000 abexp results
//   one_page_checkout --format csv
//
// Exit codes: 0 success, 1 failure (invalid config, breaking diff, server
// error), 2 usage error (and a diff input that fails validation), 3 server
// unreachable.
#include <cmath>
#include <iostream>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "client/cli/command.h"
#include "client/cli/format.h"
#include "client/cli/report_command.h"
#include "client/cli/results_command.h"
#include "client/cli/stats_command.h"
#include "client/cli/token_command.h"
#include "client/client.h"
#include "server/core/config_diff.h"
#include "server/core/config_parser.h"

// Defines ABEXP_GIT_REVISION; CMake writes it on every build (Bazel has none).
#ifdef ABEXP_HAVE_GIT_REVISION_HEADER
#include "abexp_git_revision.h"
#endif

namespace abexp::cli {
namespace {

// `abexp --version`: abexp::build_info's project version and git revision
// (abexp_git_revision.h, written by CMake on every build).
#if defined(ABEXP_VERSION) && defined(ABEXP_GIT_REVISION)
constexpr char kVersionLine[] =
    "abexp " ABEXP_VERSION " (git " ABEXP_GIT_REVISION ")\n";
#else
constexpr char kVersionLine[] = "abexp unknown (git unknown)\n";
#endif

const std::string kMainUsage = absl::StrCat(
    R"(abexp: A/B experiment assignment, from the command line.

usage: abexp COMMAND [ARGS] [FLAGS]
       abexp --version   the version and the git revision it was built from

Commands that ask a running abexp-server:
  assign               which variants and feature values a unit gets
  explain EXPERIMENT   the full trace of one unit's assignment
  experiments list     the experiments the server serves
  experiments get KEY  one experiment in detail
  track                record an event (e.g. an order with its revenue)
  expose               record that a unit was shown a variant
  results EXPERIMENT   the experiment's figures per metric and variant, the
                       sample-ratio check, guardrails and a decision
  report EXPERIMENT    the same results as a self-contained HTML page
                       with charts (--out FILE)

Commands on config files (no server needed):
  validate FILE        check a config; lists every problem as file:line:column
  diff OLD NEW         which units a config change moves; fails when a
                       running experiment would move assigned units

Access tokens (no server needed):
  token create --role ROLE[,ROLE] --name NAME
                       a new token for a client, and its line for the
                       server's --auth_tokens_file

Offline calculator (no server needed):
  stats SUBCOMMAND     significance of counts from elsewhere, sample-ratio
                       check, sample size, p-value adjustment
                       (`abexp stats --help`)

Flags for every command:
  --format text|json   output format (default: text; `results` also
                       prints csv)
  --help               help for the command

Flags for every command that asks abexp-server: --server, --timeout, and
TLS and the access token:
)",
    kSecurityFlagsHelp, R"(

Run `abexp COMMAND --help` for the command's flags.
Exit codes: 0 ok, 1 failure (also a token the server refuses), 2 usage
error, 3 server unreachable (also a failed TLS handshake).
)");

const std::string kServerFlags = absl::StrCat(
    R"(  --server HOST:PORT   abexp-server address (default: 127.0.0.1:50051)
  --timeout DURATION   deadline per command, e.g. 500ms, 2s (default: 5s)
  --format text|json   output format (default: text)
)",
    kSecurityFlagsHelp);

constexpr char kUnitFlags[] =
    R"(  --id TYPE=ID         a unit id to hash on, e.g. --id user_id=u-123;
                       repeat for several id types (at least one)
  --attr NAME=VALUE    a targeting attribute; repeatable. true/false are
                       bools, numbers are numbers, anything else a string.
                       Force a type with NAME:TYPE=VALUE (TYPE is string,
                       number or bool), e.g. --attr app_version:string=5.2
)";

// Builds the unit from --id and --attr flags.
absl::StatusOr<v1::Unit> ParseUnit(const Args& args) {
  UnitBuilder builder;
  const std::vector<std::string> ids = args.All("id");
  if (ids.empty()) {
    return absl::InvalidArgumentError(
        "no unit id; pass at least one --id TYPE=ID, e.g. --id user_id=u-123");
  }
  for (const std::string& id : ids) {
    std::pair<std::string, std::string> kv =
        absl::StrSplit(id, absl::MaxSplits('=', 1));
    if (kv.first.empty() || kv.second.empty() ||
        id.find('=') == std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--id '", id, "' is not TYPE=ID; write e.g. --id user_id=u-123"));
    }
    builder.Id(kv.first, kv.second);
  }
  for (const std::string& attr : args.All("attr")) {
    const size_t eq = attr.find('=');
    if (eq == std::string::npos || eq == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("--attr '", attr,
                       "' is not NAME=VALUE; write e.g. --attr country=CN"));
    }
    std::string name = attr.substr(0, eq);
    const std::string value = attr.substr(eq + 1);
    std::string type;
    if (size_t colon = name.find(':'); colon != std::string::npos) {
      type = name.substr(colon + 1);
      name = name.substr(0, colon);
    }
    double number = 0;
    if (type.empty()) {
      if (value == "true" || value == "false") {
        type = "bool";
      } else if (absl::SimpleAtod(value, &number) && std::isfinite(number) &&
                 !absl::StrContains(absl::AsciiStrToLower(value), "n")) {
        // The 'n' check keeps "nan"/"inf"-like words strings.
        type = "number";
      } else {
        type = "string";
      }
    }
    if (type == "string") {
      builder.String(name, value);
    } else if (type == "number") {
      if (!absl::SimpleAtod(value, &number) || !std::isfinite(number)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "--attr ", name, ":number='", value, "' is not a number"));
      }
      builder.Number(name, number);
    } else if (type == "bool") {
      if (value != "true" && value != "false") {
        return absl::InvalidArgumentError(absl::StrCat(
            "--attr ", name, ":bool='", value, "' must be true or false"));
      }
      builder.Bool(name, value == "true");
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          "--attr ", attr, ": unknown type '", type,
          "'; use string, number or bool (semver values are strings)"));
    }
  }
  return builder.Build();
}

Command ServerCommand(std::string name, std::string usage, bool with_unit) {
  Command c{
      std::move(name), std::move(usage), {"server", "timeout", "format"}, {}};
  AddSecurityFlags(&c);
  if (with_unit) {
    c.value_flags.insert({"id", "attr"});
    c.repeatable.insert({"id", "attr"});
  }
  return c;
}

// The start of a command about one unit (assign, track, expose): flags, no
// positional arguments, and the unit from --id. A value means: exit with it.
std::optional<int> StartUnitCommand(const Command& command,
                                    const std::vector<std::string>& argv,
                                    Args* args, bool* json, v1::Unit* unit) {
  if (std::optional<int> done = Start(command, argv, args, json)) return done;
  if (!args->positional.empty()) {
    return Usage(command, "unexpected argument '" + args->positional[0] + "'");
  }
  absl::StatusOr<v1::Unit> parsed = ParseUnit(*args);
  if (!parsed.ok()) {
    return Usage(command, std::string(parsed.status().message()));
  }
  *unit = *std::move(parsed);
  return std::nullopt;
}

int RunAssign(const std::vector<std::string>& argv) {
  Command command = ServerCommand(
      "assign",
      absl::StrCat(
          "usage: abexp assign --id TYPE=ID [--attr NAME=VALUE]... "
          "[--experiment KEY]... [--feature KEY]...\n\n"
          "Asks the server which experiments the unit is in and its feature "
          "values.\n\n",
          kUnitFlags,
          "  --experiment KEY     only this experiment; repeatable\n"
          "  --feature KEY        only this feature; repeatable\n",
          kServerFlags),
      /*with_unit=*/true);
  command.value_flags.insert({"experiment", "feature"});
  command.repeatable.insert({"experiment", "feature"});
  Args args;
  bool json = false;
  v1::Unit unit;
  if (std::optional<int> done =
          StartUnitCommand(command, argv, &args, &json, &unit)) {
    return *done;
  }
  absl::StatusOr<std::unique_ptr<Client>> client = MakeClient(args);
  if (!client.ok()) {
    return Usage(command, std::string(client.status().message()));
  }
  absl::StatusOr<Assignment> a =
      (*client)->Assign(unit, args.All("experiment"), args.All("feature"));
  if (!a.ok()) return ServerError(args, a.status());
  // The library degrades for page views; the CLI reports the failure.
  if (a->degraded()) return ServerError(args, a->error());
  if (json) {
    std::cout << ToJson(a->response());
  } else {
    PrintAssign(a->response(), std::cout);
  }
  return kExitOk;
}

int RunExplain(const std::vector<std::string>& argv) {
  Command command = ServerCommand(
      "explain",
      absl::StrCat(
          "usage: abexp explain EXPERIMENT --id TYPE=ID [--attr "
          "NAME=VALUE]...\n\n"
          "Shows every step of how the unit was (or was not) assigned in the "
          "experiment:\nstatus, schedule, holdout, targeting rules, layer, the "
          "exact bytes hashed,\nthe bucket and the variant ranges.\n\n",
          kUnitFlags, kServerFlags),
      /*with_unit=*/true);
  Args args;
  bool json = false;
  if (std::optional<int> done = Start(command, argv, &args, &json))
    return *done;
  if (args.positional.size() != 1) {
    return Usage(command, "expected exactly one EXPERIMENT key");
  }
  absl::StatusOr<v1::Unit> unit = ParseUnit(args);
  if (!unit.ok()) return Usage(command, std::string(unit.status().message()));
  absl::StatusOr<std::unique_ptr<Client>> client = MakeClient(args);
  if (!client.ok()) {
    return Usage(command, std::string(client.status().message()));
  }
  absl::StatusOr<v1::ExplainAssignmentResponse> r =
      (*client)->Explain(*unit, args.positional[0]);
  if (!r.ok()) return ServerError(args, r.status());
  if (json) {
    std::cout << ToJson(*r);
  } else {
    PrintExplain(*r, std::cout);
  }
  return kExitOk;
}

int RunExperiments(const std::vector<std::string>& argv) {
  Command command = ServerCommand(
      "experiments",
      absl::StrCat("usage: abexp experiments list [--status STATUS]...\n"
                   "       abexp experiments get KEY\n\n"
                   "Lists the experiments the server serves, or shows one.\n\n"
                   "  --status STATUS      list: only draft, running, paused "
                   "or stopped; repeatable\n",
                   kServerFlags),
      /*with_unit=*/false);
  command.value_flags.insert("status");
  command.repeatable.insert("status");
  Args args;
  bool json = false;
  if (std::optional<int> done = Start(command, argv, &args, &json))
    return *done;
  if (args.positional.empty()) {
    return Usage(command, "expected `list` or `get KEY`");
  }
  const std::string& verb = args.positional[0];
  if (verb == "list") {
    if (args.positional.size() != 1) {
      return Usage(command, "`experiments list` takes no arguments");
    }
    v1::ListExperimentsRequest request;
    for (const std::string& s : args.All("status")) {
      v1::ExperimentStatus status;
      if (!v1::ExperimentStatus_Parse(
              "EXPERIMENT_STATUS_" + absl::AsciiStrToUpper(s), &status) ||
          status == v1::EXPERIMENT_STATUS_UNSPECIFIED) {
        return Usage(command, "--status '" + s +
                                  "' is not draft, running, paused or stopped");
      }
      request.add_statuses(status);
    }
    absl::StatusOr<std::unique_ptr<Client>> client = MakeClient(args);
    if (!client.ok()) {
      return Usage(command, std::string(client.status().message()));
    }
    absl::StatusOr<v1::ListExperimentsResponse> r =
        (*client)->ListExperiments(request);
    if (!r.ok()) return ServerError(args, r.status());
    if (json) {
      std::cout << ToJson(*r);
    } else {
      PrintExperimentList(*r, std::cout);
    }
    return kExitOk;
  }
  if (verb == "get") {
    if (args.positional.size() != 2) {
      return Usage(command, "`experiments get` takes exactly one KEY");
    }
    if (args.flags.count("status") > 0) {
      return Usage(command, "--status only applies to `experiments list`");
    }
    absl::StatusOr<std::unique_ptr<Client>> client = MakeClient(args);
    if (!client.ok()) {
      return Usage(command, std::string(client.status().message()));
    }
    absl::StatusOr<v1::Experiment> r =
        (*client)->GetExperiment(args.positional[1]);
    if (!r.ok()) return ServerError(args, r.status());
    if (json) {
      std::cout << ToJson(*r);
    } else {
      PrintExperiment(*r, std::cout);
    }
    return kExitOk;
  }
  return Usage(command, "unknown subcommand '" + verb +
                            "'; expected `list` or `get KEY`");
}

constexpr char kRecordFlags[] =
    R"(  --time RFC3339       when it happened, e.g. 2026-11-23T10:15:00Z
                       (default: now)
  --key KEY            idempotency key: sending the same key again counts
                       once (default: derived by the server)
)";

// Parses --time into *time (left unset when the flag is absent).
absl::Status ParseTimeFlag(const Args& args, google::protobuf::Timestamp* time,
                           bool* has_time) {
  *has_time = false;
  const std::string text = args.Get("time", "");
  if (text.empty()) return absl::OkStatus();
  absl::Time t;
  std::string error;
  if (!absl::ParseTime(absl::RFC3339_full, text, &t, &error)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--time '", text, "' is not RFC 3339 (", error,
        "); write e.g. 2026-11-23T10:15:00Z or 2026-11-23T18:15:00+08:00"));
  }
  const int64_t nanos = absl::ToUnixNanos(t);
  int64_t seconds = nanos / 1000000000;
  int64_t rest = nanos % 1000000000;
  if (rest < 0) {
    rest += 1000000000;
    --seconds;
  }
  time->set_seconds(seconds);
  time->set_nanos(static_cast<int32_t>(rest));
  *has_time = true;
  return absl::OkStatus();
}

// Only the unit's ids matter for recording.
Command RecordCommand(std::string name, std::string usage) {
  Command c{std::move(name),
            std::move(usage),
            {"server", "timeout", "format", "id", "time", "key"},
            {"id"}};
  AddSecurityFlags(&c);
  return c;
}

// --time (unset without it, so the server's time is used) and --key of an
// EventRecord or ExposureRecord. A value means: exit with it.
template <typename Record>
std::optional<int> SetTimeAndKey(const Command& command, const Args& args,
                                 Record* record) {
  bool has_time = false;
  if (absl::Status s = ParseTimeFlag(args, record->mutable_time(), &has_time);
      !s.ok()) {
    return Usage(command, std::string(s.message()));
  }
  if (!has_time) record->clear_time();
  record->set_idempotency_key(args.Get("key", ""));
  return std::nullopt;
}

// Connects, makes the recording `call` and prints its per-record results.
template <typename Call>
int SendRecords(const Command& command, const Args& args, bool json,
                const Call& call) {
  absl::StatusOr<std::unique_ptr<Client>> client = MakeClient(args);
  if (!client.ok()) {
    return Usage(command, std::string(client.status().message()));
  }
  const auto r = call(**client);
  if (!r.ok()) return ServerError(args, r.status());
  if (json) {
    std::cout << ToJson(*r);
  } else {
    PrintRecordResults(r->results(), r->config_version(), std::cout);
  }
  return kExitOk;
}

int RunTrack(const std::vector<std::string>& argv) {
  Command command = RecordCommand(
      "track",
      absl::StrCat(
          "usage: abexp track --id TYPE=ID --event NAME [--value NUMBER] "
          "[--time RFC3339] [--key KEY]\n\n"
          "Records one event. It counts in every experiment with a metric on "
          "the event\nwhose unit the --id names, from the unit's first "
          "exposure on (docs/attribution.md).\nEvents no metric uses are "
          "accepted and ignored.\n\n"
          "  --id TYPE=ID         the unit, e.g. --id user_id=u-123; repeat "
          "for several id types\n"
          "  --event NAME         the event name, e.g. order_completed\n"
          "  --value NUMBER       a value, e.g. the order's revenue 59.90\n",
          kRecordFlags, kServerFlags));
  command.value_flags.insert({"event", "value"});
  Args args;
  bool json = false;
  v1::Unit unit;
  if (std::optional<int> done =
          StartUnitCommand(command, argv, &args, &json, &unit)) {
    return *done;
  }
  v1::RecordEventsRequest request;
  v1::EventRecord* event = request.add_events();
  *event->mutable_unit() = unit;
  event->set_name(args.Get("event", ""));
  if (event->name().empty()) {
    return Usage(command,
                 "--event is required; name the event, e.g. --event signup");
  }
  if (args.flags.count("value") > 0) {
    const std::string text = args.Get("value", "");
    double value = 0;
    if (!absl::SimpleAtod(text, &value) || !std::isfinite(value)) {
      return Usage(command, "--value '" + text +
                                "' is not a finite number; write e.g. 59.90");
    }
    event->set_value(value);
  }
  if (std::optional<int> done = SetTimeAndKey(command, args, event))
    return *done;
  return SendRecords(command, args, json, [&](Client& client) {
    return client.RecordEvents(std::move(request));
  });
}

int RunExpose(const std::vector<std::string>& argv) {
  Command command = RecordCommand(
      "expose",
      absl::StrCat(
          "usage: abexp expose --experiment KEY --variant VARIANT --id "
          "TYPE=ID [--attr NAME=VALUE]... [--time RFC3339] [--key KEY]\n\n"
          "Records that the unit was shown the variant. Only exposures start "
          "a unit's\nattribution; an assignment alone is not one. An "
          "exposure to a second variant\nmakes the unit multi-exposed and "
          "keeps it out of the metrics.\n\n"
          "  --experiment KEY     the experiment\n"
          "  --variant VARIANT    the variant shown\n"
          "  --id TYPE=ID         the unit, e.g. --id user_id=u-123; must "
          "include the\n                       id type the experiment "
          "hashes on\n"
          "  --attr NAME=VALUE    an attribute the exposure carries, e.g. a "
          "metric's CUPED\n                       covariate: --attr "
          "orders_90d=3; repeatable, typed as for\n                       "
          "`abexp assign`\n"
          "  --config-version V   the config_version of the assignment "
          "(default: the\n                       server's current one)\n",
          kRecordFlags, kServerFlags));
  command.value_flags.insert(
      {"experiment", "variant", "config-version", "attr"});
  command.repeatable.insert("attr");
  Args args;
  bool json = false;
  v1::Unit unit;
  if (std::optional<int> done =
          StartUnitCommand(command, argv, &args, &json, &unit)) {
    return *done;
  }
  v1::RecordExposuresRequest request;
  v1::ExposureRecord* exposure = request.add_exposures();
  *exposure->mutable_unit() = unit;
  exposure->set_experiment_key(args.Get("experiment", ""));
  exposure->set_variant_key(args.Get("variant", ""));
  if (exposure->experiment_key().empty() || exposure->variant_key().empty()) {
    return Usage(command,
                 "--experiment and --variant are required, e.g. --experiment "
                 "one_page_checkout --variant treatment");
  }
  if (std::optional<int> done = SetTimeAndKey(command, args, exposure))
    return *done;
  exposure->set_config_version(args.Get("config-version", ""));
  return SendRecords(command, args, json, [&](Client& client) {
    return client.RecordExposures(request);
  });
}

int RunValidate(const std::vector<std::string>& argv) {
  Command command{"validate",
                  "usage: abexp validate FILE [--format text|json]\n\n"
                  "Checks an experiment config without a server. Prints\n"
                  "`FILE: OK (N experiments, M features), version V` and any\n"
                  "warnings, or every problem as file:line:column: message.\n"
                  "Exit code 0 when valid, 1 when not.\n",
                  {"format"},
                  {}};
  Args args;
  bool json = false;
  if (std::optional<int> done = Start(command, argv, &args, &json))
    return *done;
  if (args.positional.size() != 1) {
    return Usage(command, "expected exactly one FILE");
  }
  const std::string& path = args.positional[0];
  const ParseResult result = ParseConfigFile(path);
  if (json) {
    std::cout << ValidateJson(path, result);
  } else {
    PrintValidate(path, result, result.ok() ? std::cout : std::cerr);
  }
  return result.ok() ? kExitOk : kExitFailure;
}

int RunDiff(const std::vector<std::string>& argv) {
  Command command{
      "diff",
      "usage: abexp diff OLD NEW [--format text|json]\n\n"
      "Compares two experiment configs and computes, exactly over the bucket\n"
      "space, the share of units each experiment would move to another\n"
      "variant (moved, of units assigned in both), newly assign (added) and\n"
      "unassign (removed), both of all eligible units. Targeting changes are\n"
      "noted, not computed.\n\n"
      "Exit codes: 0 when no running experiment moves assigned units or\n"
      "changes its variant split (or it declares a new phase: `phase`\n"
      "increased), 1 when one does (e.g. a weight change, a variant inserted\n"
      "or appended with a positive weight, a salt change without a new\n"
      "phase), 2 when a file is invalid.\n",
      {"format"},
      {}};
  Args args;
  bool json = false;
  if (std::optional<int> done = Start(command, argv, &args, &json))
    return *done;
  if (args.positional.size() != 2) {
    return Usage(command, "expected two files: OLD NEW");
  }
  const ParseResult old_result = ParseConfigFile(args.positional[0]);
  const ParseResult new_result = ParseConfigFile(args.positional[1]);
  if (!old_result.ok() || !new_result.ok()) {
    for (const ParseResult* r : {&old_result, &new_result}) {
      for (const Diagnostic& d : r->diagnostics) {
        if (!d.warning) std::cerr << d.ToString() << "\n";
      }
    }
    std::cerr << "abexp diff: fix the errors above; both files must pass "
                 "`abexp validate`\n";
    return kExitUsage;
  }
  const ConfigDiff diff = DiffConfigs(*old_result.config, *new_result.config);
  if (json) {
    std::cout << DiffJson(diff);
  } else {
    PrintDiff(diff, std::cout);
  }
  return diff.ok() ? kExitOk : kExitFailure;
}

int Main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty()) {
    std::cerr << kMainUsage;
    return kExitUsage;
  }
  const std::string command = args[0];
  args.erase(args.begin());
  if (command == "--help" || command == "-h" || command == "help") {
    std::cout << kMainUsage;
    return kExitOk;
  }
  if (command == "--version" || command == "version") {
    std::cout << kVersionLine;
    return kExitOk;
  }
  if (command == "assign") return RunAssign(args);
  if (command == "explain") return RunExplain(args);
  if (command == "experiments") return RunExperiments(args);
  if (command == "track") return RunTrack(args);
  if (command == "expose") return RunExpose(args);
  if (command == "validate") return RunValidate(args);
  if (command == "diff") return RunDiff(args);
  if (command == "stats") return RunStats(args);
  if (command == "results") return RunResults(args);
  if (command == "report") return RunReport(args);
  if (command == "token") return RunToken(args);
  std::cerr << "abexp: unknown command '" << command << "'\n"
            << "Run `abexp --help` for the list of commands.\n";
  return kExitUsage;
}

}  // namespace
}  // namespace abexp::cli

int main(int argc, char** argv) { return abexp::cli::Main(argc, argv); }
