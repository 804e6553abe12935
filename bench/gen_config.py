#!/usr/bin/env python3
"""Generates bench/experiments-50.yaml, the benchmark config.

examples/experiments.yaml grown to what a busy product runs: 50 running
experiments spread over 5 layers, with a 2% global holdout, segments,
attribute rules of every operator the benchmarks should exercise, 2 to 4
variants with integer and decimal weights, partial traffic, QA overrides and
feature rules.

The output depends on nothing but this file (no randomness, no clock), so it
is the same on every machine and Python version:

    python3 bench/gen_config.py > bench/experiments-50.yaml     # regenerate
    python3 bench/gen_config.py --check bench/experiments-50.yaml  # up to date?

Only the standard library is used.
"""

import argparse
import sys

# Attributes the units of bench/micro_bench.cc and bench/loadgen.cc send.
ATTRIBUTES = [
    ("country", "string", "ISO 3166 code"),
    ("platform", "string", "ios | android | web"),
    ("app_version", "semver", "compared by semver.org precedence"),
    ("locale", "string", "BCP 47 tag, e.g. en-US"),
    ("acquisition_channel", "string", "organic | paid_search | social | referral"),
    ("days_since_signup", "number", ""),
    ("days_since_last_active", "number", ""),
    ("orders_last_90d", "number", ""),
    ("membership_tier", "string", "basic | silver | gold | platinum"),
    ("rfm_tier", "string", "champions | loyal | at_risk | hibernating"),
    ("is_vip", "bool", ""),
]

SEGMENTS = """\
segments:
  new_users: {attribute: days_since_signup, lt: 7}
  churned: {attribute: days_since_last_active, gt: 30}
  mobile_app: {attribute: platform, in: [ios, android]}
  modern_app: {attribute: app_version, gte: "5.2.0"}
  reachable_by_push:
    all:
      - {segment: mobile_app}
      - {segment: modern_app}
  high_value:
    any:
      - {attribute: is_vip, eq: true}
      - {attribute: membership_tier, in: [gold, platinum]}
      - {attribute: rfm_tier, eq: champions}
  apac: {attribute: country, in: [CN, SG, JP, KR, AU, IN, ID, TH]}
  europe: {attribute: country, in: [DE, FR, GB, ES, IT, NL, SE, PL]}
  english_locale: {attribute: locale, regex: "^en(-|$)"}
  repeat_buyers: {attribute: orders_last_90d, gte: 2}
"""

METRICS = """\
metrics:
  - key: registration_conversion
    type: binomial
    event: signup
    window: 7d
  - key: bounce_rate
    type: binomial
    event: landing_bounce
    window: 1d
    guardrail: true
    higher_is_better: false
  - key: order_conversion
    type: binomial
    event: order_completed
  - key: payment_abandonment
    type: binomial
    event: payment_abandoned
    higher_is_better: false
  - key: arpu
    type: sum
    event: order_completed
    aggregate: value
  - key: orders_per_user
    type: sum
    event: order_completed
    aggregate: count
  - key: average_order_value
    type: ratio
    numerator: {event: order_completed, aggregate: value}
    denominator: {event: order_completed, aggregate: count}
  - key: search_ctr
    type: ratio
    numerator: {event: search_result_click, aggregate: count}
    denominator: {event: search_performed, aggregate: count}
  - key: push_open_rate
    type: binomial
    event: push_opened
    window: 3d
  - key: day1_retention
    type: retention
    event: app_open
    day: 1
  - key: day7_retention
    type: retention
    event: app_open
    day: 7
"""

# The layers, each with the features its experiments set. The landing layer
# hashes on device_id, for logged-out visitors.
#   (layer key, unit, description, [(feature, type, default, [values])],
#    [metrics], primary metric)
LAYERS = [
    ("checkout", "user_id", "Checkout page experiments",
     [("checkout_flow", "string", "multi_step", ["one_page", "two_step", "express"]),
      ("payment_methods", "json", "[card, paypal]",
       ["[card, paypal, apple_pay]", "[card, paypal, google_pay, apple_pay]",
        "[card, wallet]"]),
      ("checkout_cta_text", "string", "Place order", ["Buy now", "Pay securely", "Complete purchase"]),
      ("address_autocomplete", "bool", "false", ["true"]),
      ("free_shipping_threshold", "number", "49", ["39", "29", "59"])],
     ["order_conversion", "payment_abandonment", "arpu", "average_order_value"],
     "order_conversion"),
    ("search", "user_id", "Search ranking and result page experiments",
     [("search_ranker", "string", "bm25_v3", ["ltr_v1", "ltr_v2", "hybrid_v1"]),
      ("search_page_size", "number", "24", ["36", "48", "20"]),
      ("search_filters_layout", "string", "sidebar", ["top_bar", "drawer"]),
      ("search_spellcheck", "bool", "true", ["false"]),
      ("search_boosts", "json", "{recency: 0.1, popularity: 0.5}",
       ["{recency: 0.2, popularity: 0.4}", "{recency: 0.05, popularity: 0.7}"])],
     ["search_ctr", "order_conversion", "orders_per_user"], "search_ctr"),
    ("home_feed", "user_id", "Home feed modules and ordering",
     [("feed_algorithm", "string", "chronological", ["ranked_v1", "ranked_v2", "diverse_v1"]),
      ("feed_module_order", "json", "[deals, recent, recommended]",
       ["[recommended, deals, recent]", "[recent, recommended, deals]"]),
      ("feed_card_style", "string", "compact", ["large", "carousel"]),
      ("feed_autoplay_video", "bool", "false", ["true"]),
      ("feed_items_per_page", "number", "20", ["30", "40"])],
     ["day1_retention", "day7_retention", "orders_per_user"], "day7_retention"),
    ("pricing", "user_id", "Prices, discounts and membership offers",
     [("discount_banner", "json", "{enabled: false}",
       ["{enabled: true, percent: 10}", "{enabled: true, percent: 15}",
        "{enabled: true, percent: 5, code: WELCOME5}"]),
      ("membership_trial_days", "number", "7", ["14", "30"]),
      ("price_display", "string", "inclusive", ["exclusive", "strikethrough"]),
      ("bundle_offers", "bool", "false", ["true"]),
      ("loyalty_points_multiplier", "number", "1", ["1.5", "2"])],
     ["arpu", "order_conversion", "average_order_value"], "arpu"),
    ("landing", "device_id", "Logged-out landing page experiments",
     [("landing_headline", "string", "Shop everything in one place",
       ["Free delivery on your first order", "Millions of products, one cart",
        "Deals that end tonight"]),
      ("landing_hero_image", "string", "hero_default.jpg",
       ["hero_lifestyle.jpg", "hero_products.jpg"]),
      ("signup_form_fields", "json", "[email, password]",
       ["[email]", "[phone]", "[email, password, name]"]),
      ("social_login", "bool", "false", ["true"]),
      ("landing_sections", "number", "5", ["3", "7"])],
     ["registration_conversion", "bounce_rate"], "registration_conversion"),
]

# Targeting, cycled through the experiments; None targets everyone.
TARGETING = [
    None,
    "{segment: modern_app}",
    "{attribute: country, in: [US, CA, GB, AU]}",
    "all:\n  - {segment: new_users}\n  - {attribute: acquisition_channel, ne: referral}",
    None,
    "{segment: apac}",
    "all:\n  - {segment: mobile_app}\n  - not: {segment: high_value}",
    "{attribute: days_since_signup, gte: 30}",
    "any:\n  - {segment: repeat_buyers}\n  - {attribute: membership_tier, in: [silver, gold, platinum]}",
    "{segment: english_locale}",
    None,
    "all:\n  - {segment: europe}\n  - {attribute: platform, eq: web}",
    "{attribute: app_version, lt: \"6.0.0\"}",
    "{not: {segment: churned}}",
    "all:\n  - {segment: reachable_by_push}\n  - {attribute: is_vip, exists: true}",
]

# Variant weights, cycled; strings are written as-is (decimals stay exact).
WEIGHTS = [
    ["50", "50"],
    ["33.3", "33.3", "33.4"],
    ["1", "1"],
    ["20", "40", "40"],
    ["25", "25", "25", "25"],
    ["90", "10"],
    ["50", "25", "25"],
    ["70", "30"],
]

TRAFFIC = ["1", "0.5", "1", "0.25", "\"10%\"", "0.8", "1", "0.05"]

# Ten slices of each layer, in bucket fractions; the widths differ by layer
# (rotated) and leave a little of each layer unused, as real layers do.
SLICE_WIDTHS = ["0.15", "0.1", "0.1", "0.05", "0.1", "0.1", "0.1", "0.1", "0.1", "0.05"]

EXPERIMENTS_PER_LAYER = 10


def fraction_sum(parts):
    """Adds decimal fraction strings exactly (4 places), as a string."""
    total = sum(round(float(p) * 10000) for p in parts)
    whole, rest = divmod(total, 10000)
    if rest == 0:
        return str(whole)
    return ("%d.%04d" % (whole, rest)).rstrip("0")


def indent(text, spaces):
    pad = " " * spaces
    return "\n".join(pad + line for line in text.split("\n"))


def feature_value(ftype, value):
    """A YAML scalar or flow collection for a feature value."""
    if ftype == "string":
        return '"%s"' % value
    return value


def gen_features():
    out = ["features:"]
    for layer, _, _, features, _, _ in LAYERS:
        for key, ftype, default, _ in features:
            out.append("  - key: %s" % key)
            out.append("    type: %s" % ftype)
            out.append("    default: %s" % feature_value(ftype, default))
            out.append("    description: Set by the %s layer's experiments" % layer)
            # Feature rules apply to units no experiment decides: a country
            # kill switch and a percentage rollout, as in the example.
            if ftype == "bool":
                out.append("    rules:")
                out.append("      - when: {attribute: country, in: [DE, FR]}")
                out.append("        value: %s" % default)
                out.append("      - rollout: 0.2")
                out.append("        value: %s" % ("false" if default == "true" else "true"))
    # Features no experiment sets, decided by their rules alone.
    out.append("  - key: new_search")
    out.append("    type: bool")
    out.append("    default: false")
    out.append("    rules:")
    out.append("      - when: {attribute: country, eq: US}")
    out.append("        value: false")
    out.append("      - rollout: 0.10")
    out.append("        value: true")
    out.append("  - key: dark_mode_default")
    out.append("    type: bool")
    out.append("    default: false")
    out.append("    rules:")
    out.append("      - when: {segment: modern_app}")
    out.append("        rollout: 0.5")
    out.append("        value: true")
    return out


def gen_experiment(n, layer_index, slot, lines):
    layer, unit, _, features, metrics, primary = LAYERS[layer_index]
    key = "%s_exp%02d" % (layer, slot + 1)
    weights = WEIGHTS[n % len(WEIGHTS)]
    widths = SLICE_WIDTHS[layer_index:] + SLICE_WIDTHS[:layer_index]
    start = fraction_sum(widths[:slot])
    end = fraction_sum(widths[: slot + 1])
    # Each experiment sets one of its layer's features, and every third one
    # a second feature too.
    main_feature = features[slot % len(features)]
    extra_feature = features[(slot + 2) % len(features)] if n % 3 == 0 else None

    lines.append("  - key: %s" % key)
    lines.append("    description: Benchmark experiment %d (%s layer, slot %d)"
                 % (n + 1, layer, slot + 1))
    lines.append("    owner: %s-team@example.com" % layer.replace("_", "-"))
    lines.append("    status: running")
    if unit != "user_id":
        lines.append("    unit: %s" % unit)
    if n % 4 == 1:
        lines.append("    start: 2026-%02d-01T00:00:00Z" % (1 + n % 9))
    if n % 7 == 3:
        lines.append("    end: 2031-01-01T00:00:00Z")
    traffic = TRAFFIC[n % len(TRAFFIC)]
    if traffic != "1":
        lines.append("    traffic: %s" % traffic)
    # Not n: with 5 layers, n % 15 would give each layer only 3 of the rules.
    targeting = TARGETING[(slot + 3 * layer_index) % len(TARGETING)]
    if targeting is not None:
        if "\n" in targeting:
            lines.append("    targeting:")
            lines.append(indent(targeting, 6))
        else:
            lines.append("    targeting: %s" % targeting)
    lines.append("    layer: %s" % layer)
    lines.append("    layer_range: [%s, %s]" % (start, end))
    lines.append("    variants:")
    for v, weight in enumerate(weights):
        vkey = "control" if v == 0 else "treatment_%d" % v
        lines.append("      - key: %s" % vkey)
        lines.append("        weight: %s" % weight)
        settings = []
        for fkey, ftype, default, values in [main_feature] + ([extra_feature] if extra_feature else []):
            value = default if v == 0 else values[(v - 1 + n) % len(values)]
            settings.append("%s: %s" % (fkey, feature_value(ftype, value)))
        lines.append("        features: {%s}" % ", ".join(settings))
    if n % 6 == 2:
        lines.append("    qa_overrides:")
        lines.append("      treatment_1: [qa-%s-1, qa-%s-2]" % (key, key))
    lines.append("    metrics: [%s]" % ", ".join(metrics))
    lines.append("    primary_metric: %s" % primary)


def generate():
    lines = [
        "# GENERATED by bench/gen_config.py: do not edit by hand.",
        "# Regenerate: python3 bench/gen_config.py > bench/experiments-50.yaml",
        "#",
        "# The benchmark config (issue 5): examples/experiments.yaml grown to 50",
        "# running experiments in 5 layers of 10, with a global holdout, segments,",
        "# attribute targeting and feature rules. Layout and semantics: docs/config.md.",
        "",
        "attributes:",
    ]
    for name, atype, comment in ATTRIBUTES:
        line = "  %s: %s" % (name, atype)
        if comment:
            line = "%-36s# %s" % (line, comment)
        lines.append(line)
    lines.append("")
    lines.extend(SEGMENTS.rstrip("\n").split("\n"))
    lines.append("")
    lines.append("holdout:")
    lines.append("  fraction: 0.02")
    lines.append("")
    lines.append("layers:")
    for layer, unit, description, _, _, _ in LAYERS:
        lines.append("  %s:" % layer)
        lines.append("    description: %s" % description)
        lines.append("    unit: %s" % unit)
    lines.append("")
    lines.extend(METRICS.rstrip("\n").split("\n"))
    lines.append("")
    lines.extend(gen_features())
    lines.append("")
    lines.append("experiments:")
    # Interleave the layers, as a config that grew over time would.
    n = 0
    for slot in range(EXPERIMENTS_PER_LAYER):
        for layer_index in range(len(LAYERS)):
            gen_experiment(n, layer_index, slot, lines)
            n += 1
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", metavar="FILE",
                        help="exit 1 if FILE differs from what this script generates")
    args = parser.parse_args()
    text = generate()
    if args.check:
        with open(args.check, encoding="utf-8") as f:
            if f.read() != text:
                print("%s is out of date; regenerate it with: "
                      "python3 bench/gen_config.py > %s" % (args.check, args.check),
                      file=sys.stderr)
                return 1
        return 0
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
