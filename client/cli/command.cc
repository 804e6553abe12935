#include "client/cli/command.h"

#include <cstdlib>
#include <iostream>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "client/credentials.h"

namespace abexp::cli {
namespace {

// The part of Start() that does not depend on the formats allowed.
std::optional<int> ParseOrHelp(const Command& command,
                               const std::vector<std::string>& argv,
                               Args* args) {
  if (absl::Status s = ParseArgs(command, argv, args); !s.ok()) {
    return Usage(command, std::string(s.message()));
  }
  if (args->help) {
    std::cout << command.usage;
    return kExitOk;
  }
  return std::nullopt;
}

// TLS and the token from the flags; the variables fill in the rest.
SecurityOptions SecurityFromFlags(const Args& args) {
  SecurityOptions security;
  security.tls_ca_file = args.Get("tls_ca_file", "");
  security.tls_cert_file = args.Get("tls_cert_file", "");
  security.tls_key_file = args.Get("tls_key_file", "");
  security.token = args.Get("token", "");
  return security;
}

// True when the UNAVAILABLE message is about TLS rather than reachability.
bool IsTlsFailure(absl::string_view message) {
  for (absl::string_view word :
       {"SSL", "ssl", "TLS", "handshake", "certificate"}) {
    if (absl::StrContains(message, word)) return true;
  }
  return false;
}

}  // namespace

const char kSecurityFlagsHelp[] =
    R"(  --tls_ca_file FILE   TLS: PEM CA certificate(s) that signed the server's
                       certificate (env ABEXP_TLS_CA_FILE)
  --tls_cert_file FILE mutual TLS: this client's PEM certificate, with
  --tls_key_file FILE  its unencrypted PEM key (env ABEXP_TLS_CERT_FILE,
                       ABEXP_TLS_KEY_FILE); for a server that requires them
  --token TOKEN        access token, sent as `authorization: Bearer TOKEN`
                       (env ABEXP_TOKEN; `abexp token create` makes one)
)";

void AddSecurityFlags(Command* command) {
  command->value_flags.insert(
      {"tls_ca_file", "tls_cert_file", "tls_key_file", "token"});
}

int Usage(const Command& command, const std::string& message) {
  std::cerr << "abexp " << command.name << ": " << message << "\n"
            << "Run `abexp " << command.name << " --help` for usage.\n";
  return kExitUsage;
}

absl::Status ParseArgs(const Command& command,
                       const std::vector<std::string>& argv, Args* args) {
  for (size_t i = 0; i < argv.size(); ++i) {
    const std::string& arg = argv[i];
    if (arg == "--") {
      args->positional.insert(args->positional.end(), argv.begin() + i + 1,
                              argv.end());
      break;
    }
    if (arg == "-h" || arg == "--help") {
      args->help = true;
      continue;
    }
    if (!absl::StartsWith(arg, "-") || arg == "-") {
      args->positional.push_back(arg);
      continue;
    }
    std::string name = arg.substr(absl::StartsWith(arg, "--") ? 2 : 1);
    std::string value;
    bool has_value = false;
    if (size_t eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      has_value = true;
    }
    if (command.value_flags.count(name) == 0) {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag --", name));
    }
    if (!has_value) {
      if (i + 1 >= argv.size()) {
        return absl::InvalidArgumentError(
            absl::StrCat("flag --", name, " needs a value"));
      }
      value = argv[++i];
    }
    if (args->flags.count(name) > 0 && command.repeatable.count(name) == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("flag --", name, " given more than once"));
    }
    args->flags.emplace(name, value);
  }
  return absl::OkStatus();
}

absl::StatusOr<Format> ParseFormat(const Args& args, bool allow_csv) {
  const std::string format = args.Get("format", "text");
  if (format == "json") return Format::kJson;
  if (format == "text") return Format::kText;
  if (format == "csv" && allow_csv) return Format::kCsv;
  if (allow_csv) {
    return absl::InvalidArgumentError(
        absl::StrCat("--format must be text, json or csv, not '", format, "'"));
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "--format must be text or json, not '", format, "'",
      format == "csv" ? " (only `abexp results` prints csv)" : ""));
}

absl::StatusOr<bool> JsonFormat(const Args& args) {
  absl::StatusOr<Format> format = ParseFormat(args, /*allow_csv=*/false);
  if (!format.ok()) return format.status();
  return *format == Format::kJson;
}

std::optional<int> Start(const Command& command,
                         const std::vector<std::string>& argv, Args* args,
                         bool* json) {
  if (std::optional<int> done = ParseOrHelp(command, argv, args)) return done;
  absl::StatusOr<bool> format = JsonFormat(*args);
  if (!format.ok()) {
    return Usage(command, std::string(format.status().message()));
  }
  *json = *format;
  return std::nullopt;
}

std::optional<int> StartWithCsv(const Command& command,
                                const std::vector<std::string>& argv,
                                Args* args, Format* format) {
  if (std::optional<int> done = ParseOrHelp(command, argv, args)) return done;
  absl::StatusOr<Format> parsed = ParseFormat(*args, /*allow_csv=*/true);
  if (!parsed.ok()) {
    return Usage(command, std::string(parsed.status().message()));
  }
  *format = *parsed;
  return std::nullopt;
}

absl::StatusOr<std::unique_ptr<Client>> MakeClient(const Args& args) {
  ClientOptions options;
  options.target = args.Get("server", kDefaultServer);
  absl::Duration timeout;
  const std::string timeout_text = args.Get("timeout", "5s");
  if (!absl::ParseDuration(timeout_text, &timeout) ||
      timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--timeout '", timeout_text,
                     "' is not a positive duration; write e.g. 500ms or 2s"));
  }
  options.deadline = timeout;
  options.record_deadline = timeout;
  options.initial_backoff = absl::Milliseconds(50);
  options.security = SecurityFromFlags(args);
  // Resolved here first so that an error names the flag, not the option.
  absl::StatusOr<ChannelSecurity> security =
      ResolveSecurity(options.security, "--");
  if (!security.ok()) return security.status();
  return Client::Create(std::move(options));
}

int ServerError(const Args& args, const absl::Status& status) {
  std::cerr << "error: " << absl::StatusCodeToString(status.code()) << ": "
            << status.message() << "\n";
  const bool token_given =
      args.flags.count("token") > 0 || std::getenv(kTokenEnv) != nullptr;
  const bool tls_given = args.flags.count("tls_ca_file") > 0 ||
                         args.flags.count("tls_cert_file") > 0 ||
                         std::getenv(kTlsCaFileEnv) != nullptr ||
                         std::getenv(kTlsCertFileEnv) != nullptr;
  switch (status.code()) {
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kDeadlineExceeded:
      // The server answers UNAVAILABLE itself when its Redis is down, and
      // its message says so; only a call that never reached it needs a hint.
      if (absl::StrContains(status.message(), "Redis")) {
        return kExitUnreachable;
      }
      if (IsTlsFailure(status.message())) {
        std::cerr << "The TLS handshake with abexp-server failed.";
      } else {
        std::cerr << "Is abexp-server running at "
                  << args.Get("server", kDefaultServer)
                  << "? Pass its address with --server HOST:PORT.";
      }
      std::cerr << (tls_given ? " Check that --tls_ca_file holds the CA that "
                                "signed the server's certificate, and if the "
                                "server requires client certificates, pass "
                                "--tls_cert_file and --tls_key_file.\n"
                              : " If the server serves TLS, pass --tls_ca_file "
                                "(and for mutual TLS --tls_cert_file and "
                                "--tls_key_file).\n");
      return kExitUnreachable;
    case absl::StatusCode::kUnauthenticated:
      std::cerr << (token_given
                        ? "The server refused the token given with --token "
                          "(or ABEXP_TOKEN): pass a token listed in its "
                          "--auth_tokens_file.\n"
                        : "The server requires a token: pass --token TOKEN "
                          "or set ABEXP_TOKEN.\n");
      return kExitFailure;
    case absl::StatusCode::kPermissionDenied:
      std::cerr << "The token lacks the role the message names: use a token "
                   "that has it, or add the role to the token's line in the "
                   "server's --auth_tokens_file.\n";
      return kExitFailure;
    default:
      return kExitFailure;
  }
}

}  // namespace abexp::cli
