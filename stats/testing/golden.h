// Test support: golden values computed independently (SciPy, statsmodels)
// by the scripts in stats/testdata/ and stored beside the tests.
//
// File format, one case per line:
//   # a comment
//   case=binomial_small n_c=1000 x_c=100 p_value=0.0123456789012345678 ...
// Each field is key=value with no spaces; a value is a number (written with
// 17 significant digits so it round-trips), `null` (the quantity is
// undefined), `true`/`false`, or a comma-separated list of numbers. `case`
// names the line and must be unique in the file.
#ifndef ABEXP_STATS_TESTING_GOLDEN_H_
#define ABEXP_STATS_TESTING_GOLDEN_H_

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace abexp::stats::testing {

struct GoldenCase {
  std::string name;
  std::map<std::string, std::string> fields;
  std::string file;  // for failure messages
  int line = 0;

  bool Has(const std::string& key) const { return fields.count(key) > 0; }
  bool IsNull(const std::string& key) const;
  // The field as a number. Fails the current test (and returns NaN) when the
  // field is missing or not a number.
  double Num(const std::string& key) const;
  // nullopt for `null`.
  std::optional<double> MaybeNum(const std::string& key) const;
  std::vector<double> Nums(const std::string& key) const;
  bool Bool(const std::string& key) const;
  std::string Str(const std::string& key) const;
};

// Reads a golden file; `path` is relative to the source tree
// (e.g. "stats/testdata/compare.golden"). NOT_FOUND / INVALID_ARGUMENT name
// the file and line.
absl::StatusOr<std::vector<GoldenCase>> LoadGolden(const std::string& path);

// The cases of `path` whose field kind=`kind`, in file order. Fails the
// current test when the file cannot be read or holds no such case.
std::vector<GoldenCase> GoldenCasesOfKind(const std::string& path,
                                          const std::string& kind);

// EXPECTs |got - want| <= max(rel * |want|, abs): 1e-9 relative, or 1e-12
// absolute for tiny values. Pass abs = 0 to demand relative accuracy of tiny
// values too (e.g. a p-value of 1e-30 computed as an upper tail). `what`
// names the quantity in the failure message.
void ExpectClose(double got, double want, const std::string& what,
                 double rel = 1e-9, double abs = 1e-12);

}  // namespace abexp::stats::testing

#endif  // ABEXP_STATS_TESTING_GOLDEN_H_
