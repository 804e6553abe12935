// `abexp report` against a real abexp-server recording into a real
// redis-server, and the page it writes loaded by headless Chromium
// (chromium-headless-shell, scripts/install-deps.sh) from the file with the
// network off: screenshots at 1280x2000 and 375 wide must show a drawn page
// (decoded here: the PNG's size, and more than one colour), the DOM must hold
// the charts, the browser must log no console message, and its network log
// no request for anything but the file; printed to PDF, its pages must be
// A4. Also the command's errors.
//
// ABEXP_REPORT_SCREENSHOT_DIR: when set, the screenshots and the page
// (report.html) are copied there (docs/report.png is the 1280-wide one).
#include <zlib.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/testing/recording_test_util.h"
#include "server/testing/server_process.h"

namespace abexp {
namespace {

using ::abexp::testing::RecordingServerTest;
using ::abexp::testing::RunProcess;
using ::abexp::testing::TempDir;
using ::abexp::testing::User;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kConfig[] = R"yaml(
attributes: {platform: string}
metrics:
  - key: purchase_conversion
    type: binomial
    event: order_completed
  - key: orders_per_user
    type: sum
    event: order_completed
    aggregate: count
  - key: newsletter_signup
    type: binomial
    event: signed_up
  - key: error_rate
    type: binomial
    event: error_shown
    guardrail: true
    higher_is_better: false
  - key: checkout_funnel
    type: funnel
    steps: [checkout_viewed, payment_submitted]

experiments:
  - key: checkout
    description: "Address, payment and review on one page instead of three"
    owner: checkout-team@example.com
    status: running
    start: 2026-01-01T00:00:00Z
    variants:
      - {key: control, weight: 1}
      - {key: treatment, weight: 1}
      - {key: b, weight: 1}
    metrics: [purchase_conversion, orders_per_user, newsletter_signup, error_rate,
              checkout_funnel]
    primary_metric: purchase_conversion
    dimensions: [platform]
  - key: hostile
    description: "One-page checkout <script>alert('x')</script> & <b>bold</b>"
    owner: checkout-team@example.com
    status: running
    start: 2026-01-01T00:00:00Z
    variants:
      - {key: control, weight: 1}
      - {key: treatment, weight: 1}
    metrics: [purchase_conversion]
    primary_metric: purchase_conversion
)yaml";

struct Result {
  int code = -1;
  std::string out;
  std::string err;
};

Result RunCommand(const std::vector<std::string>& argv) {
  Result r;
  absl::StatusOr<int> code = RunProcess(argv, &r.out, &r.err);
  EXPECT_TRUE(code.ok()) << code.status();
  r.code = code.value_or(-1);
  return r;
}

Result Cli(std::vector<std::string> args) {
  args.insert(args.begin(), ABEXP_CLI_BIN);
  return RunCommand(args);
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

size_t Count(const std::string& text, const std::string& what) {
  const std::vector<absl::string_view> parts = absl::StrSplit(text, what);
  return parts.size() - 1;
}

// ---- A PNG reader: enough for Chromium's screenshots (8-bit RGB or RGBA,
// not interlaced). ----

struct Image {
  uint32_t width = 0, height = 0;
  int channels = 0;
  std::vector<uint8_t> pixels;  // rows of width * channels bytes
};

uint32_t BigEndian32(const std::string& s, size_t at) {
  return (uint32_t{static_cast<uint8_t>(s[at])} << 24) |
         (uint32_t{static_cast<uint8_t>(s[at + 1])} << 16) |
         (uint32_t{static_cast<uint8_t>(s[at + 2])} << 8) |
         uint32_t{static_cast<uint8_t>(s[at + 3])};
}

int Paeth(int a, int b, int c) {
  const int p = a + b - c;
  const int pa = std::abs(p - a), pb = std::abs(p - b), pc = std::abs(p - c);
  if (pa <= pb && pa <= pc) return a;
  return pb <= pc ? b : c;
}

// The decoded image, or a message saying why it cannot be read.
absl::StatusOr<Image> DecodePng(const std::string& png) {
  if (png.size() < 8 || png.compare(0, 8, "\x89PNG\r\n\x1a\n") != 0) {
    return absl::InvalidArgumentError("not a PNG signature");
  }
  Image image;
  std::string idat;
  for (size_t at = 8; at + 12 <= png.size();) {
    const uint32_t length = BigEndian32(png, at);
    const std::string type = png.substr(at + 4, 4);
    if (at + 12 + length > png.size()) {
      return absl::InvalidArgumentError("truncated chunk " + type);
    }
    const std::string data = png.substr(at + 8, length);
    if (type == "IHDR") {
      image.width = BigEndian32(data, 0);
      image.height = BigEndian32(data, 4);
      const int depth = data[8], colour = data[9], interlace = data[12];
      if (depth != 8 || (colour != 2 && colour != 6) || interlace != 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("unsupported PNG: depth ", depth, ", colour type ",
                         colour, ", interlace ", interlace));
      }
      image.channels = colour == 2 ? 3 : 4;
    } else if (type == "IDAT") {
      idat += data;
    }
    at += 12 + length;
  }
  const size_t stride = size_t{image.width} * image.channels;
  std::vector<uint8_t> raw((stride + 1) * image.height);
  uLongf raw_size = raw.size();
  if (image.channels == 0 ||
      uncompress(raw.data(), &raw_size,
                 reinterpret_cast<const Bytef*>(idat.data()),
                 idat.size()) != Z_OK ||
      raw_size != raw.size()) {
    return absl::InvalidArgumentError("IDAT does not inflate to the image");
  }
  image.pixels.resize(stride * image.height);
  const int bpp = image.channels;
  for (size_t y = 0; y < image.height; ++y) {
    const uint8_t filter = raw[y * (stride + 1)];
    const uint8_t* in = &raw[y * (stride + 1) + 1];
    uint8_t* out = &image.pixels[y * stride];
    const uint8_t* up = y > 0 ? out - stride : nullptr;
    for (size_t x = 0; x < stride; ++x) {
      const int a = x >= static_cast<size_t>(bpp) ? out[x - bpp] : 0;
      const int b = up ? up[x] : 0;
      const int c = up && x >= static_cast<size_t>(bpp) ? up[x - bpp] : 0;
      int v = in[x];
      switch (filter) {
        case 0:
          break;
        case 1:
          v += a;
          break;
        case 2:
          v += b;
          break;
        case 3:
          v += (a + b) / 2;
          break;
        case 4:
          v += Paeth(a, b, c);
          break;
        default:
          return absl::InvalidArgumentError(
              absl::StrCat("bad filter ", filter, " in row ", y));
      }
      out[x] = static_cast<uint8_t>(v);
    }
  }
  return image;
}

// The colour (0xRRGGBB) of the pixel whose bytes start at `i`.
uint32_t RgbAt(const Image& image, size_t i) {
  return (uint32_t{image.pixels[i]} << 16) |
         (uint32_t{image.pixels[i + 1]} << 8) | image.pixels[i + 2];
}

// The distinct colours of `image` (RGB), counted up to `limit`.
size_t Colours(const Image& image, size_t limit) {
  std::set<uint32_t> seen;
  for (size_t i = 0; i + 2 < image.pixels.size() && seen.size() < limit;
       i += image.channels) {
    seen.insert(RgbAt(image, i));
  }
  return seen.size();
}

// The rows (from the top) that hold more than one colour: where something
// is drawn.
size_t DrawnRows(const Image& image) {
  size_t drawn = 0;
  const size_t stride = size_t{image.width} * image.channels;
  for (size_t y = 0; y < image.height; ++y) {
    const uint8_t* row = &image.pixels[y * stride];
    for (size_t x = image.channels; x < stride; ++x) {
      if (row[x] != row[x % image.channels]) {
        ++drawn;
        break;
      }
    }
  }
  return drawn;
}

// The pixels of `image` that are exactly the colour `rgb` (0xRRGGBB).
size_t PixelsOf(const Image& image, uint32_t rgb) {
  size_t n = 0;
  for (size_t i = 0; i + 2 < image.pixels.size(); i += image.channels) {
    n += RgbAt(image, i) == rgb;
  }
  return n;
}

// The /MediaBox arrays of a PDF's pages, e.g. "0 0 594.96 841.92".
std::vector<std::string> MediaBoxes(const std::string& pdf) {
  std::vector<std::string> boxes;
  const std::string key = "/MediaBox [";
  for (size_t at = pdf.find(key); at != std::string::npos;
       at = pdf.find(key, at + 1)) {
    const size_t end = pdf.find(']', at);
    if (end == std::string::npos) break;
    boxes.push_back(pdf.substr(at + key.size(), end - at - key.size()));
  }
  return boxes;
}

// Whether a media box is A4 portrait: 210 x 297 mm, 595.3 x 841.9 pt.
bool IsA4(const std::string& box) {
  std::vector<double> v;
  for (absl::string_view part : absl::StrSplit(box, ' ', absl::SkipEmpty())) {
    double d = 0;
    if (!absl::SimpleAtod(part, &d)) return false;
    v.push_back(d);
  }
  return v.size() == 4 && std::fabs(v[2] - v[0] - 595.3) < 2 &&
         std::fabs(v[3] - v[1] - 841.9) < 2;
}

// ---- Headless Chromium ----

std::string Chromium() {
  if (const char* env = std::getenv("ABEXP_CHROMIUM")) return env;
  for (const char* path :
       {"/usr/bin/chromium-headless-shell", "/usr/bin/chromium"}) {
    if (std::filesystem::exists(path)) return path;
  }
  return "";
}

// What one run of the browser on `page` left behind.
struct BrowserRun {
  Result result;
  std::string net_log;  // the --log-net-log JSON
};

// Runs headless Chromium on file `page` with the network off: every
// connection goes to a dead proxy and every name resolves to nothing.
// `mode_flags` say what to do (--screenshot=..., --dump-dom).
BrowserRun RunBrowser(const TempDir& dir, const std::string& page,
                      const std::string& name,
                      std::vector<std::string> mode_flags) {
  const std::string chromium = Chromium();
  EXPECT_FALSE(chromium.empty())
      << "no headless Chromium: install chromium-headless-shell "
         "(scripts/install-deps.sh) or set ABEXP_CHROMIUM";
  const std::string net_log = absl::StrCat(dir.path(), "/", name, ".netlog");
  std::vector<std::string> argv = {
      chromium,
      "--no-sandbox",
      "--headless",
      "--disable-gpu",
      "--no-first-run",
      "--hide-scrollbars",
      "--proxy-server=127.0.0.1:9",
      "--host-resolver-rules=MAP * ~NOTFOUND",
      "--enable-logging=stderr",
      "--v=0",
      absl::StrCat("--user-data-dir=", dir.path(), "/", name, ".profile"),
      absl::StrCat("--log-net-log=", net_log)};
  for (std::string& f : mode_flags) argv.push_back(std::move(f));
  argv.push_back(absl::StrCat("file://", page));
  BrowserRun run;
  run.result = RunCommand(argv);
  run.net_log = ReadFile(net_log);
  return run;
}

// The messages a page's run must not have: console output (an uncaught
// error, a failed load) and requests for anything but files.
void ExpectQuietAndOffline(const BrowserRun& run, const std::string& what) {
  EXPECT_EQ(run.result.code, 0) << what << "\n" << run.result.err;
  EXPECT_THAT(run.result.err, Not(HasSubstr("CONSOLE"))) << what;
  EXPECT_THAT(run.result.err, Not(HasSubstr("Uncaught"))) << what;
  EXPECT_FALSE(run.net_log.empty()) << what << ": no network log written";
  EXPECT_THAT(run.net_log, Not(HasSubstr("\"url\":\"http"))) << what;
  EXPECT_THAT(run.net_log, Not(HasSubstr("\"url\":\"ws"))) << what;
}

class ReportBrowserTest : public RecordingServerTest {
 protected:
  ReportBrowserTest() : RecordingServerTest(kConfig, "reportbrowser") {}

  // Exposes units `prefix`0 .. `prefix`(n-1) to `variant` of checkout at
  // `at`, the first `web` of them on platform web and the rest on ios.
  void Expose(const std::string& variant, const std::string& prefix, int n,
              int web, absl::Time at) {
    std::vector<v1::Unit> units;
    for (int i = 0; i < n; ++i) {
      v1::Unit& unit = units.emplace_back(User(absl::StrCat(prefix, i)));
      (*unit.mutable_attributes())["platform"].set_string_value(
          i < web ? "web" : "ios");
    }
    ExposeUnits("checkout", variant, units, at);
  }
  void Send(const std::string& event, const std::string& prefix, int n,
            absl::Time at) {
    SendEvents(event, prefix, n, at + absl::Seconds(1));
  }

  // 1000 units per variant over two UTC days, 400 yesterday ("-y") and 600
  // today; treatment converts better (130 vs 100 orders in all, one each),
  // b no differently (98); signups only in treatment (a zero control rate);
  // errors about the same; today's units view the checkout (300, 330, 300)
  // and then pay (150, 180, 140). By platform: web has 250, 150 and 200 of
  // today's units (a sample-ratio mismatch: chi2 = 25, p < 0.001), ios the
  // rest (750, 850, 800: chi2 = 6.25, p = 0.04, no mismatch); the totals
  // are balanced.
  void Record() {
    const absl::Time yesterday = start_ - absl::Hours(24);
    for (const auto& [v, web] : {std::pair<const char*, int>{"control", 250},
                                 {"treatment", 150},
                                 {"b", 200}}) {
      const std::string prefix(1, v[0]);
      ASSERT_NO_FATAL_FAILURE(Expose(v, prefix + "-y", 400, 0, yesterday));
      ASSERT_NO_FATAL_FAILURE(Expose(v, prefix, 600, web, start_));
    }
    ASSERT_NO_FATAL_FAILURE(Send("order_completed", "c-y", 40, yesterday));
    ASSERT_NO_FATAL_FAILURE(Send("order_completed", "t-y", 52, yesterday));
    ASSERT_NO_FATAL_FAILURE(Send("order_completed", "b-y", 39, yesterday));
    ASSERT_NO_FATAL_FAILURE(Send("order_completed", "c", 60, start_));
    ASSERT_NO_FATAL_FAILURE(Send("order_completed", "t", 78, start_));
    ASSERT_NO_FATAL_FAILURE(Send("order_completed", "b", 59, start_));
    ASSERT_NO_FATAL_FAILURE(Send("signed_up", "t", 6, start_));
    ASSERT_NO_FATAL_FAILURE(Send("error_shown", "c", 20, start_));
    ASSERT_NO_FATAL_FAILURE(Send("error_shown", "t", 22, start_));
    ASSERT_NO_FATAL_FAILURE(Send("error_shown", "b", 19, start_));
    const absl::Time later = start_ + absl::Seconds(1);
    ASSERT_NO_FATAL_FAILURE(Send("checkout_viewed", "c", 300, start_));
    ASSERT_NO_FATAL_FAILURE(Send("checkout_viewed", "t", 330, start_));
    ASSERT_NO_FATAL_FAILURE(Send("checkout_viewed", "b", 300, start_));
    ASSERT_NO_FATAL_FAILURE(Send("payment_submitted", "c", 150, later));
    ASSERT_NO_FATAL_FAILURE(Send("payment_submitted", "t", 180, later));
    ASSERT_NO_FATAL_FAILURE(Send("payment_submitted", "b", 140, later));
  }

  std::string Day(absl::Time t) const {
    return absl::FormatTime("%Y-%m-%d", t, absl::UTCTimeZone());
  }

  const absl::Time start_ = absl::Now();
  TempDir out_;
};

TEST_F(ReportBrowserTest, TheReportRendersInChromiumWithTheNetworkOff) {
  ASSERT_NO_FATAL_FAILURE(StartServer());
  ASSERT_NO_FATAL_FAILURE(Record());
  const std::string page = absl::StrCat(out_.path(), "/checkout.html");
  const Result report = Cli(
      {"report", "checkout", "--server", server_->address(), "--out", page});
  ASSERT_EQ(report.code, 0) << report.err;
  EXPECT_EQ(report.out, page + "\n");
  EXPECT_EQ(report.err, "");

  struct Shot {
    std::string name;
    uint32_t width, height;
  };
  for (const Shot& shot :
       {Shot{"wide", 1280, 2000}, Shot{"phone", 375, 2000}}) {
    SCOPED_TRACE(shot.name);
    const std::string png = absl::StrCat(out_.path(), "/", shot.name, ".png");
    const BrowserRun run = RunBrowser(
        out_, page, shot.name,
        {absl::StrCat("--screenshot=", png),
         absl::StrCat("--window-size=", shot.width, ",", shot.height)});
    ExpectQuietAndOffline(run, shot.name);
    absl::StatusOr<Image> image = DecodePng(ReadFile(png));
    ASSERT_TRUE(image.ok()) << image.status();
    EXPECT_EQ(image->width, shot.width);
    EXPECT_EQ(image->height, shot.height);
    // A blank page is one colour; text and charts in several colours are
    // many (anti-aliasing adds more).
    EXPECT_GT(Colours(*image, 64), 16u);
    // The page is long: something is drawn over most of the screen's rows.
    EXPECT_GT(DrawnRows(*image), image->height / 4);
    if (const char* keep = std::getenv("ABEXP_REPORT_SCREENSHOT_DIR")) {
      std::filesystem::copy_file(
          png, absl::StrCat(keep, "/report-", shot.name, ".png"),
          std::filesystem::copy_options::overwrite_existing);
    }
  }

  if (const char* keep = std::getenv("ABEXP_REPORT_SCREENSHOT_DIR")) {
    std::filesystem::copy_file(
        page, absl::StrCat(keep, "/report.html"),
        std::filesystem::copy_options::overwrite_existing);
  }
  const BrowserRun dom = RunBrowser(out_, page, "dom", {"--dump-dom"});
  ExpectQuietAndOffline(dom, "dump-dom");
  const std::string& html = dom.result.out;
  // Five metrics, each a relative and an absolute forest plot, and a
  // relative and an absolute trend.
  EXPECT_EQ(Count(html, "<svg class=\"forest\""), 10u);
  EXPECT_EQ(Count(html, "<svg class=\"trend\""), 10u);
  EXPECT_EQ(Count(html, "class=\"zero-line\""), 20u);
  // treatment and b in each plot, but newsletter_signup has no interval
  // where its rate is 0 against 0 (b: absolute and relative) or the
  // relative lift divides by control's 0 (treatment). Only the absolute
  // plots have always-valid intervals: one per variant and metric but b's
  // newsletter_signup.
  EXPECT_EQ(Count(html, "<line class=\"ci-fixed\""), 2u * 10 - 3);
  EXPECT_EQ(Count(html, "<line class=\"ci-always-valid\""), 2u * 5 - 1);
  // The sum metric is a mean per unit, not a percentage: 130 / 1000.
  EXPECT_THAT(html, HasSubstr("orders_per_user: 0.1 -&gt; 0.13"));
  EXPECT_THAT(html, HasSubstr(">not defined (see the warnings)</text>"));
  EXPECT_THAT(html, HasSubstr("Address, payment and review on one page"));
  EXPECT_THAT(html, HasSubstr("checkout-team@example.com"));
  EXPECT_THAT(html, Not(HasSubstr("role=\"alert\""))) << "1000 units each";
  // The daily trend over the two cohort days: yesterday's 400 units and
  // today's 600 per variant as bars, and lines through both days: at least
  // treatment's and b's on purchase_conversion, relative and absolute.
  EXPECT_THAT(html, HasSubstr("id=\"daily-trend\""));
  EXPECT_EQ(Count(html, "<svg class=\"exposures\""), 1u);
  EXPECT_EQ(Count(html, "<rect class=\"bar\""), 6u);
  EXPECT_THAT(html,
              HasSubstr(absl::StrCat("<title>", Day(start_ - absl::Hours(24)),
                                     " treatment: 400 units</title>")));
  EXPECT_THAT(html, HasSubstr(absl::StrCat("<title>", Day(start_),
                                           " treatment: 600 units</title>")));
  EXPECT_THAT(html, HasSubstr(absl::StrCat("cohort day (UTC), ",
                                           Day(start_ - absl::Hours(24)),
                                           " to ", Day(start_))));
  EXPECT_GE(Count(html, "<g class=\"trend-line\""), 4u);
  EXPECT_GE(Count(html, "class=\"ci-band\""), 4u);
  EXPECT_THAT(html, HasSubstr("is not a decision"));
  // The funnel: a chart above its table, per step a bar per variant of its
  // share of the 1000 exposed units; treatment's payers are 180 / 330 =
  // 54.5% of its viewers against control's 50%.
  EXPECT_EQ(Count(html, "<svg class=\"funnel\""), 1u);
  EXPECT_LT(html.find("<svg class=\"funnel\""),
            html.find("<th scope=\"col\">Of previous step</th>"));
  EXPECT_EQ(Count(html, "<rect class=\"funnel-bar\""), 6u);
  EXPECT_THAT(html, HasSubstr(">1. checkout_viewed</text>"));
  EXPECT_THAT(html, HasSubstr(">2. payment_submitted</text>"));
  EXPECT_THAT(html, HasSubstr(">30.0%, 300 units</text>"));
  EXPECT_THAT(html, HasSubstr("<title>treatment, step 2. payment_submitted: "
                              "18.0%, 180 units</title>"));
  EXPECT_THAT(html, HasSubstr(">54.5%</text>"));
  EXPECT_THAT(html, HasSubstr(">+4.55 pp</text>"));

  // Printed, every page is A4 (595 x 842 pt), not the browser's default
  // Letter (612 x 792): the page's @page rule holds.
  const std::string pdf = absl::StrCat(out_.path(), "/checkout.pdf");
  const BrowserRun print = RunBrowser(
      out_, page, "print",
      {"--no-pdf-header-footer", absl::StrCat("--print-to-pdf=", pdf)});
  ExpectQuietAndOffline(print, "print-to-pdf");
  const std::vector<std::string> boxes = MediaBoxes(ReadFile(pdf));
  ASSERT_GE(boxes.size(), 2u) << "the report is longer than one page";
  for (const std::string& box : boxes) {
    EXPECT_TRUE(IsA4(box)) << box;
  }
}

// With --dimension the page ends with the Segments section: per platform
// its heading, units, sample-ratio check, forest plot and table, and the
// banner naming web, whose check fails. Chromium builds every element of it
// and draws the banner.
TEST_F(ReportBrowserTest, TheSegmentsSectionRendersInChromium) {
  ASSERT_NO_FATAL_FAILURE(StartServer());
  ASSERT_NO_FATAL_FAILURE(Record());
  const std::string page = absl::StrCat(out_.path(), "/segments.html");
  const Result report = Cli({"report", "checkout", "--dimension", "platform",
                             "--server", server_->address(), "--out", page});
  ASSERT_EQ(report.code, 0) << report.err;

  const BrowserRun dom = RunBrowser(out_, page, "segments-dom", {"--dump-dom"});
  ExpectQuietAndOffline(dom, "dump-dom");
  const std::string& html = dom.result.out;
  const size_t section =
      html.find("<section class=\"segments\" id=\"segments\">");
  ASSERT_NE(section, std::string::npos) << "no Segments section";
  const std::string segments = html.substr(section);
  EXPECT_THAT(segments, HasSubstr("<h2>Segments by platform</h2>"));
  EXPECT_THAT(segments, HasSubstr("<strong>Exploratory.</strong>"));
  // ios (yesterday's units and the rest of today's) and web, each a section
  // of its own.
  EXPECT_EQ(Count(segments, "<section class=\"segment\">"), 2u);
  EXPECT_THAT(segments, HasSubstr("<h3>platform = ios</h3>"));
  EXPECT_THAT(segments, HasSubstr("<h3>platform = web</h3>"));
  EXPECT_THAT(segments, HasSubstr("Exposed units: control 250, treatment 150, "
                                  "b 200"));
  EXPECT_THAT(segments, HasSubstr("Exposed units: control 750, treatment 850, "
                                  "b 800"));
  // Only web's check fails, and its banner names it.
  EXPECT_EQ(Count(segments, "segment-srm-mismatch"), 1u);
  EXPECT_THAT(segments,
              HasSubstr("Sample ratio mismatch in platform = web: do not "
                        "trust its figures"));
  EXPECT_THAT(segments, HasSubstr("<p class=\"srm\">Sample ratio: OK"));
  // Per value a forest plot of purchase_conversion's relative lift, with an
  // interval for treatment and b, and the table of every metric.
  EXPECT_EQ(Count(segments, "<svg class=\"forest\""), 2u);
  EXPECT_THAT(segments, HasSubstr("platform = web: purchase_conversion"));
  EXPECT_EQ(Count(segments, "<line class=\"ci-fixed\""), 4u);
  EXPECT_EQ(Count(segments, "<table class=\"segment-figures\">"), 2u);

  // Drawn: on a screen tall enough for the whole page (headless Chromium
  // does not scroll to a #fragment before its screenshot), the banner's
  // background covers a good area (#fdecea: only banners use it, and the
  // totals have none; web's banner is about 1200 x 50).
  const std::string png = absl::StrCat(out_.path(), "/segments.png");
  const BrowserRun shot = RunBrowser(
      out_, page, "segments-shot",
      {absl::StrCat("--screenshot=", png), "--window-size=1280,20000"});
  ExpectQuietAndOffline(shot, "screenshot");
  absl::StatusOr<Image> image = DecodePng(ReadFile(png));
  ASSERT_TRUE(image.ok()) << image.status();
  EXPECT_GT(PixelsOf(*image, 0xfdecea), 20000u);
}

// A description with markup in it is shown as text: Chromium builds no
// element from it.
TEST_F(ReportBrowserTest, AHostileDescriptionStaysText) {
  ASSERT_NO_FATAL_FAILURE(StartServer());
  const std::string page = absl::StrCat(out_.path(), "/hostile.html");
  const Result report =
      Cli({"report", "hostile", "--server", server_->address(), "--out", page});
  ASSERT_EQ(report.code, 0) << report.err;
  const BrowserRun dom = RunBrowser(out_, page, "hostile", {"--dump-dom"});
  ExpectQuietAndOffline(dom, "dump-dom");
  const std::string& html = dom.result.out;
  EXPECT_THAT(html, Not(HasSubstr("<script")));
  EXPECT_THAT(html, Not(HasSubstr("<b>bold")));
  EXPECT_THAT(html, HasSubstr("One-page checkout &lt;script&gt;alert('x')"
                              "&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;"));
  EXPECT_THAT(html, HasSubstr("No daily figures")) << "nothing recorded";
}

// The checks above can fail: a page that fetches an image and throws is
// caught by each of them.
TEST_F(ReportBrowserTest, TheBrowserChecksCatchAPageThatFetchesOrThrows) {
  const std::string page = out_.Write(
      "bad.html",
      "<!DOCTYPE html><html><body><p>x</p>"
      "<img src=\"http://example.com/x.png\"><script>nosuch();</script>"
      "</body></html>");
  const BrowserRun run = RunBrowser(out_, page, "bad", {"--dump-dom"});
  EXPECT_EQ(run.result.code, 0) << run.result.err;
  EXPECT_THAT(run.result.err, HasSubstr("Uncaught ReferenceError"));
  EXPECT_THAT(run.net_log, HasSubstr("\"url\":\"http://example.com/x.png\""));
}

TEST_F(ReportBrowserTest, ErrorsSayWhatIsWrong) {
  ASSERT_NO_FATAL_FAILURE(StartServer());
  const Result unknown = Cli({"report", "nope", "--server", server_->address(),
                              "--out", absl::StrCat(out_.path(), "/x.html")});
  EXPECT_EQ(unknown.code, 1);
  EXPECT_THAT(unknown.err, HasSubstr("NOT_FOUND"));
  EXPECT_THAT(unknown.err, HasSubstr("checkout")) << "names the known ones";
  EXPECT_FALSE(std::filesystem::exists(absl::StrCat(out_.path(), "/x.html")));

  const std::string unwritable = absl::StrCat(out_.path(), "/no/such/dir.html");
  const Result cannot = Cli({"report", "checkout", "--server",
                             server_->address(), "--out", unwritable});
  EXPECT_EQ(cannot.code, 1);
  EXPECT_THAT(cannot.err,
              HasSubstr("cannot write the report to " + unwritable));
  EXPECT_THAT(cannot.err, HasSubstr("--out"));

  const std::string address = server_->address();
  server_.reset();
  const Result down = Cli({"report", "checkout", "--server", address,
                           "--timeout", "2s", "--out", unwritable});
  EXPECT_EQ(down.code, 3);
  EXPECT_THAT(down.err, HasSubstr("Is abexp-server running at " + address));
}

// Without --out the page is EXPERIMENT-report.html in the working directory.
TEST_F(ReportBrowserTest, WithoutOutThePageGoesToTheWorkingDirectory) {
  ASSERT_NO_FATAL_FAILURE(StartServer());
  const std::string script = out_.Write(
      "run.sh",
      absl::StrCat("cd '", out_.path(), "' && exec '", ABEXP_CLI_BIN,
                   "' report checkout --server ", server_->address(), "\n"));
  const Result r = RunCommand({"/bin/sh", script});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "checkout-report.html\n");
  EXPECT_THAT(ReadFile(absl::StrCat(out_.path(), "/checkout-report.html")),
              HasSubstr("<h1>Results: checkout</h1>"));
}

}  // namespace
}  // namespace abexp
