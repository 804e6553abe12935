#include "client/cli/token_command.h"

#include <algorithm>
#include <iostream>
#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "client/cli/command.h"
#include "client/token.h"

namespace abexp::cli {
namespace {

constexpr char kUsage[] =
    R"(usage: abexp token create --role ROLE[,ROLE...] --name NAME

Makes an access token for a client of an abexp-server started with
--auth_tokens_file. Prints two lines on stdout:
  1. the token: give it to the client (--token or ABEXP_TOKEN); it is shown
     only now, and the server stores only its SHA-256;
  2. the line to add to the server's --auth_tokens_file: NAME ROLES
     sha256:HEX. Send the server SIGHUP to load it.

  --role ROLE[,ROLE]   what the token may do; repeatable:
                         assign   AssignmentService (every call)
                         record   RecordingService, and Assign with
                                  record_exposure (with assign)
                         results  ResultsService
                         admin    every role, and server reflection
  --name NAME          who holds it, e.g. checkout-service: 1 to 64 of
                       A-Z a-z 0-9 . _ -, unique in the token file; the
                       server names it in PERMISSION_DENIED errors
)";

constexpr const char* kRoles[] = {"assign", "record", "results", "admin"};
constexpr size_t kMaxNameBytes = 64;

bool IsNameChar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' ||
         c == '_' || c == '-';
}

// The roles of every --role, in the order given, without repeats; or a
// usage message.
std::optional<std::string> ParseRoles(const Args& args,
                                      std::vector<std::string>* roles) {
  const std::vector<std::string> flags = args.All("role");
  if (flags.empty()) {
    return "--role is required: name what the token may do, e.g. --role "
           "assign or --role record,assign";
  }
  for (const std::string& flag : flags) {
    for (absl::string_view role : absl::StrSplit(flag, ',')) {
      const bool known = std::find(std::begin(kRoles), std::end(kRoles),
                                   role) != std::end(kRoles);
      if (!known) {
        return absl::StrCat(
            "--role '", flag, "': ",
            role.empty() ? "an empty role"
                         : absl::StrCat("'", role, "' is not a role"),
            "; roles are ", absl::StrJoin(kRoles, ", "), ", comma-separated");
      }
      if (std::find(roles->begin(), roles->end(), role) == roles->end()) {
        roles->emplace_back(role);
      }
    }
  }
  return std::nullopt;
}

std::optional<std::string> CheckName(const std::string& name) {
  if (name.empty()) {
    return "--name is required: say who holds the token, e.g. --name "
           "checkout-service";
  }
  if (name.size() > kMaxNameBytes ||
      !std::all_of(name.begin(), name.end(), IsNameChar)) {
    return absl::StrCat("--name '", absl::CHexEscape(name),
                        "' is not a token name: use 1 to 64 characters "
                        "from A-Z a-z 0-9 . _ -, e.g. checkout-service");
  }
  return std::nullopt;
}

}  // namespace

int RunToken(const std::vector<std::string>& argv) {
  Command command{"token create", kUsage, {"role", "name"}, {"role"}};
  Args args;
  bool json = false;
  if (std::optional<int> done = Start(command, argv, &args, &json)) {
    return *done;
  }
  if (args.positional.size() != 1 || args.positional[0] != "create") {
    return Usage(command,
                 "expected `abexp token create --role ROLE --name "
                 "NAME`");
  }
  std::vector<std::string> roles;
  if (std::optional<std::string> problem = ParseRoles(args, &roles)) {
    return Usage(command, *problem);
  }
  const std::string name = args.Get("name", "");
  if (std::optional<std::string> problem = CheckName(name)) {
    return Usage(command, *problem);
  }
  absl::StatusOr<std::string> token = MakeToken();
  if (!token.ok()) {
    std::cerr << "abexp token create: " << token.status().message() << "\n";
    return kExitFailure;
  }
  const std::string roles_text = absl::StrJoin(roles, ",");
  std::cout << *token << "\n"
            << name << " " << roles_text << " " << TokenFileHash(*token)
            << "\n";
  std::cerr << "abexp token create: a token for '" << name
            << "' with the roles " << roles_text << ".\n"
            << "  Line 1 is the token: give it to the client (--token, or "
               "ABEXP_TOKEN in its environment). It is shown only now; the "
               "server keeps only its hash.\n"
            << "  Line 2 goes into the server's --auth_tokens_file; then send "
               "the server SIGHUP (kill -HUP PID) to load it.\n";
  return kExitOk;
}

}  // namespace abexp::cli
