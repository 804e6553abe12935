// The parser's entry points (config_parser.h) and its driver, Parser::Run:
// the checks on the raw text, loading the YAML, reading the sections in the
// order they depend on each other, and building the Config. The sections
// are read in parse_*.cc (see config_parser_internal.h).
#include "server/core/config_parser.h"

#include <sys/stat.h>
#include <xxhash.h>
#include <yaml-cpp/depthguard.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <tuple>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "server/core/config_parser_internal.h"

namespace abexp {
namespace config_parser_internal {
namespace {

// The top-level sections have no state of their own.
struct DocumentDraft {
  std::string what = "config";
};

// Conditions need attributes, experiments need the rest: the late
// sections are read after attributes, segments and layers.
const FieldRule<DocumentDraft> kSections[] = {
    {"attributes",
     [](Parser& p, const Entry& e, DocumentDraft&) { p.ParseAttributes(e); }},
    {"segments",
     [](Parser& p, const Entry& e, DocumentDraft&) { p.ParseSegments(e); }},
    {"holdout",
     [](Parser& p, const Entry& e, DocumentDraft&) { p.ParseHoldout(e); },
     nullptr, nullptr, /*late=*/true},
    {"layers",
     [](Parser& p, const Entry& e, DocumentDraft&) { p.ParseLayers(e); }},
    {"metrics",
     [](Parser& p, const Entry& e, DocumentDraft&) { p.ParseMetrics(e); },
     nullptr, nullptr, /*late=*/true},
    {"features",
     [](Parser& p, const Entry& e, DocumentDraft&) { p.ParseFeatures(e); },
     nullptr, nullptr, /*late=*/true},
    {"experiments",
     [](Parser& p, const Entry& e, DocumentDraft&) { p.ParseExperiments(e); },
     nullptr, nullptr, /*late=*/true},
};

}  // namespace

void Parser::Report(const YAML::Mark& mark, std::string message, bool warning) {
  Diagnostic d;
  d.file = file_;
  if (mark.line >= 0) {
    d.line = mark.line + 1;
    d.column = mark.column + 1;
  }
  d.message = std::move(message);
  d.warning = warning;
  if (!warning) ++errors_;
  diags_.push_back(std::move(d));
}

ParseResult Parser::Run() {
  if (std::optional<YAML::Node> root = Load()) ParseDocument(*root);
  SortDiagnostics();
  ParseResult result;
  result.diagnostics = std::move(diags_);
  if (errors_ > 0) return result;
  config_->version = ConfigVersionOf(text_);
  config_->source_path = file_;
  result.config = IndexedConfig::Build(std::move(*config_));
  return result;
}

std::optional<YAML::Node> Parser::Load() {
  if (text_.size() > kMaxConfigBytes) {
    Report(YAML::Mark::null_mark(), ConfigTooLargeMessage(text_.size()), false);
    return std::nullopt;
  }
  if (const size_t bad = FirstInvalidUtf8(text_);
      bad != absl::string_view::npos) {
    const absl::string_view before = text_.substr(0, bad);
    const size_t newline = before.rfind('\n');
    YAML::Mark mark = YAML::Mark::null_mark();
    mark.line =
        static_cast<int>(std::count(before.begin(), before.end(), '\n'));
    // Columns count bytes, as yaml-cpp's do.
    mark.column = static_cast<int>(
        newline == absl::string_view::npos ? bad : bad - newline - 1);
    Report(mark,
           absl::StrFormat(
               "byte 0x%02x is not valid UTF-8; config files must be UTF-8: "
               "save the file as UTF-8 and fix or remove this character",
               static_cast<unsigned char>(text_[bad])),
           false);
    return std::nullopt;
  }
  try {
    return YAML::Load(std::string(text_));
  } catch (const YAML::DeepRecursion& ex) {
    Report(
        ex.mark,
        absl::StrCat("the YAML nests too deeply here (more than ", ex.depth(),
                     " levels); flatten it (conditions may nest at most ",
                     kMaxConditionDepth, " levels)"),
        false);
  } catch (const YAML::Exception& ex) {
    // YAML forbids tabs in indentation, and yaml-cpp's message does not say so.
    const bool tab_indent = text_.find("\n\t") != absl::string_view::npos ||
                            absl::StartsWith(text_, "\t");
    Report(
        ex.mark,
        absl::StrCat("YAML syntax error: ", ex.msg,
                     tab_indent ? "; indent with spaces, not tabs"
                                : "; fix the YAML (check indentation, colons "
                                  "and quotes)"),
        false);
  }
  return std::nullopt;
}

void Parser::ParseDocument(const YAML::Node& root) {
  try {
    std::vector<YAML::Node> path;
    if (!CheckYamlNodes(root, &path)) {
      // Reported; the sections are not read (see CheckYamlNodes).
    } else if (root.IsNull()) {
      // An empty file, only comments, `---` or `null`: usually a deploy that
      // truncated the file, and served it would end every experiment.
      Report(YAML::Mark::null_mark(),
             "the file is empty; write 'experiments: []' to serve nothing on "
             "purpose",
             false);
    } else if (!root.IsMap()) {
      Error(root, absl::StrCat("the config must be a map of sections (",
                               JoinFieldNames(kSections), "), not ",
                               NodeKindName(root)));
    } else {
      DocumentDraft d;
      ReadFields(kSections, Fields(root, d.what, kSections), root, d);
      CheckExperiments();
    }
  } catch (const YAML::Exception& ex) {
    // yaml-cpp only throws here on a bug in our traversal; report it rather
    // than crash.
    Report(ex.mark,
           absl::StrCat("internal error reading the YAML: ", ex.msg,
                        "; please report this with the config"),
           false);
  }
}

void Parser::SortDiagnostics() {
  std::stable_sort(diags_.begin(), diags_.end(),
                   [](const Diagnostic& a, const Diagnostic& b) {
                     return std::tie(a.line, a.column) <
                            std::tie(b.line, b.column);
                   });
  // Aliases can make the same problem show up twice.
  diags_.erase(std::unique(diags_.begin(), diags_.end(),
                           [](const Diagnostic& a, const Diagnostic& b) {
                             return a.line == b.line && a.column == b.column &&
                                    a.message == b.message &&
                                    a.warning == b.warning;
                           }),
               diags_.end());
}

}  // namespace config_parser_internal

std::string Diagnostic::ToString() const {
  std::string out = file;
  if (line > 0) absl::StrAppend(&out, ":", line, ":", column);
  absl::StrAppend(&out, ": ", warning ? "warning: " : "", message);
  return out;
}

std::string ParseResult::FormatDiagnostics() const {
  std::string out;
  for (const Diagnostic& d : diagnostics)
    absl::StrAppend(&out, d.ToString(), "\n");
  return out;
}

ParseResult ParseConfig(absl::string_view text, absl::string_view file_name) {
  return config_parser_internal::Parser(text, file_name).Run();
}

ParseResult ParseConfigFile(const std::string& path) {
  std::string text;
  errno = 0;
  std::FILE* f = std::fopen(path.c_str(), "rb");
  int err = 0;
  struct stat st;
  std::string too_large;
  if (f == nullptr) {
    err = errno;
  } else if (fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode) &&
             static_cast<uint64_t>(st.st_size) > kMaxConfigBytes) {
    too_large =
        ConfigTooLargeMessage(st.st_size);  // refused without reading it
    std::fclose(f);
  } else {
    char buf[1 << 16];
    size_t n;
    // Past the limit, ParseConfig refuses it (a file that grew, or a pipe).
    while (text.size() <= kMaxConfigBytes &&
           (n = std::fread(buf, 1, sizeof(buf), f)) > 0) {
      text.append(buf, n);
    }
    if (std::ferror(f)) err = errno != 0 ? errno : EIO;
    std::fclose(f);
  }
  if (f == nullptr || err != 0 || !too_large.empty()) {
    ParseResult result;
    Diagnostic d;
    d.file = path;
    d.message = !too_large.empty()
                    ? std::move(too_large)
                    : absl::StrCat("cannot read file: ", std::strerror(err),
                                   "; check the path");
    result.diagnostics.push_back(std::move(d));
    return result;
  }
  return ParseConfig(text, path);
}

std::string ConfigTooLargeMessage(uint64_t size_bytes) {
  return absl::StrFormat(
      "the config is %d bytes (%.1f MiB), more than the limit of %d MiB (%d "
      "bytes); keep it "
      "smaller (qa_overrides are for a few test units, not for populations: "
      "target those "
      "with an attribute)",
      size_bytes, static_cast<double>(size_bytes) / (1 << 20),
      kMaxConfigBytes >> 20, kMaxConfigBytes);
}

std::string ConfigVersionOf(absl::string_view text) {
  return absl::StrFormat("%016x", XXH3_64bits(text.data(), text.size()));
}

bool IsConfigVersion(absl::string_view version) {
  return version.size() == 16 &&
         std::all_of(version.begin(), version.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

}  // namespace abexp
