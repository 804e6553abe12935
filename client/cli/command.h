// The flag parser every `abexp` subcommand shares: a Command declares its
// usage text and flags, Start() parses argv into Args, handles --help and
// --format, and reports usage errors the same way for every command. Also
// the connection (--server, --timeout) and the server-error exit codes every
// command that asks abexp-server shares.
//
// Thread-safe: the functions share no state.
#ifndef ABEXP_CLIENT_CLI_COMMAND_H_
#define ABEXP_CLIENT_CLI_COMMAND_H_

#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "client/client.h"

namespace abexp::cli {

// The CLI's exit codes (see `abexp --help`).
constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;
constexpr int kExitUnreachable = 3;

// Where commands look for abexp-server without --server.
constexpr char kDefaultServer[] = "127.0.0.1:50051";

// --format values. Every command prints text and JSON; only `abexp results`
// also prints CSV.
enum class Format { kText, kJson, kCsv };

struct Command {
  std::string name;  // as typed after `abexp`, e.g. "stats srm"
  std::string usage;
  // Flags that take a value; repeatable ones may appear several times.
  std::set<std::string> value_flags;
  std::set<std::string> repeatable;
};

// Parsed command line of one subcommand.
struct Args {
  std::vector<std::string> positional;
  std::multimap<std::string, std::string> flags;
  bool help = false;

  std::string Get(const std::string& name, const std::string& def) const {
    auto it = flags.find(name);
    return it == flags.end() ? def : it->second;
  }
  std::vector<std::string> All(const std::string& name) const {
    std::vector<std::string> out;
    auto [begin, end] = flags.equal_range(name);
    for (auto it = begin; it != end; ++it) out.push_back(it->second);
    return out;
  }
};

// Prints "abexp NAME: message" and where to find help to stderr; returns
// kExitUsage.
int Usage(const Command& command, const std::string& message);

// Parses flags (--name value, --name=value) and positional arguments.
// INVALID_ARGUMENT for an unknown flag, a flag without its value, or a
// non-repeatable flag given twice.
absl::Status ParseArgs(const Command& command,
                       const std::vector<std::string>& argv, Args* args);

// --format: text (the default), json, or csv when `allow_csv`.
// INVALID_ARGUMENT for any other value, naming the formats allowed.
absl::StatusOr<Format> ParseFormat(const Args& args, bool allow_csv);

// --format: true for json, false for text (the default); csv is rejected.
absl::StatusOr<bool> JsonFormat(const Args& args);

// Parses argv for `command` into *args and *json (--format text|json).
// Returns the exit code when the command must end now (--help, or a usage
// error), or nullopt.
std::optional<int> Start(const Command& command,
                         const std::vector<std::string>& argv, Args* args,
                         bool* json);

// As Start(), for a command that also prints CSV: *format is text, json or
// csv.
std::optional<int> StartWithCsv(const Command& command,
                                const std::vector<std::string>& argv,
                                Args* args, Format* format);

// The help lines of the TLS and token flags that every command asking
// abexp-server takes (AddSecurityFlags).
extern const char kSecurityFlagsHelp[];

// Adds --tls_ca_file, --tls_cert_file, --tls_key_file and --token to
// command's value flags.
void AddSecurityFlags(Command* command);

// A client for --server (default kDefaultServer) whose calls have the
// --timeout deadline (default 5s), with TLS and the token from the flags
// AddSecurityFlags adds or, for those not given, ABEXP_TLS_CA_FILE,
// ABEXP_TLS_CERT_FILE, ABEXP_TLS_KEY_FILE and ABEXP_TOKEN. INVALID_ARGUMENT
// for a bad --timeout, an unreadable or wrong PEM file or a malformed
// token, naming the flag or variable.
absl::StatusOr<std::unique_ptr<Client>> MakeClient(const Args& args);

// Prints a server error to stderr and returns the exit code:
// kExitUnreachable (with a hint about --server, or the TLS flags when the
// TLS handshake failed) for UNAVAILABLE and DEADLINE_EXCEEDED, else
// kExitFailure (with a hint about --token for UNAUTHENTICATED, about the
// token's roles for PERMISSION_DENIED).
int ServerError(const Args& args, const absl::Status& status);

}  // namespace abexp::cli

#endif  // ABEXP_CLIENT_CLI_COMMAND_H_
