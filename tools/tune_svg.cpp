// tools/tune_svg.cpp: the summary of `coeffnet tune` as a grouped bar chart, results.svg (see
// tune.hpp): one group per task plus their mean, one bar per variant with the seeds' standard
// deviation as whiskers, and each task's chance level as a dashed line.
//
// The y axis starts at the round 10% below the lowest bar, whisker or chance line, not at 0:
// the methods differ by a few points, which a 0-100% axis flattens. A cut axis starts with a
// break mark (two slashes on the axis) and every gridline is labelled, so no bar is read as
// a ratio to the bottom.
#include <algorithm>
#include <cmath>
#include <sstream>

#include <coeffnet/core/strings.hpp>

#include "tune.hpp"

namespace coeffnet::tune {

namespace {

// A width for `text` at `font_size` px in a sans-serif face: 0.6 em per character, about the
// widest average of the common faces, so labels placed with it do not overlap.
double text_width(const std::string& text, double font_size) { return 0.6 * font_size * static_cast<double>(text.size()); }

}  // namespace

std::string chart_svg(const Experiment& ex, const ojson& rows, const std::string& title) {
    const std::vector<std::string> colors{"#8c8c8c", "#d62728", "#1f77b4", "#9467bd", "#2ca02c", "#ff7f0e", "#17becf",
                                          "#bcbd22"};
    const size_t tasks = ex.tasks.size(), groups = tasks + 1, bars = rows.size();
    auto mean_of = [&](const ojson& r, size_t g) {
        return g < tasks ? r["tasks"][ex.tasks[g].name]["mean"].get<double>() : r["mean"].get<double>();
    };
    auto sd_of = [&](const ojson& r, size_t g) {
        return g < tasks ? r["tasks"][ex.tasks[g].name]["sd"].get<double>() : 0.0;
    };
    // The mean column's chance is the mean of the tasks' chances, as its bars are means of theirs.
    std::vector<double> chance(groups, 0.0);
    for (size_t t = 0; t < tasks; ++t) {
        chance[t] = ex.tasks[t].chance();
        chance[tasks] += chance[t] / static_cast<double>(tasks);
    }

    // The y range: from the round 10% below everything drawn to the round 10% above it.
    double lowest = 1.0, highest = 0.0;
    for (size_t g = 0; g < groups; ++g) {
        lowest = std::min(lowest, chance[g]);
        highest = std::max(highest, chance[g]);
        for (const auto& r : rows) {
            lowest = std::min(lowest, mean_of(r, g) - sd_of(r, g));
            highest = std::max(highest, mean_of(r, g) + sd_of(r, g));
        }
    }
    const double lo = std::clamp(std::floor(lowest * 10.0 - 0.25) / 10.0, 0.0, 0.9);  // a margin under the lowest
    const double hi = std::clamp(std::ceil(highest * 10.0 + 0.25) / 10.0, lo + 0.1, 1.0);
    const bool cut = lo > 0.0;

    // Geometry: title, plot, group names, legend.
    const double x0 = 60, y0 = 50, ph = 260, gw = std::max(150.0, 34.0 * static_cast<double>(bars) + 30.0);
    const double W = x0 + gw * static_cast<double>(groups) + 20;
    const double bw = gw * 0.8 / static_cast<double>(std::max<size_t>(bars, 1));
    auto y_of = [&](double v) { return y0 + ph - ph * (std::clamp(v, lo, hi) - lo) / (hi - lo); };

    // The legend, in rows that fit the width: each entry as wide as its label.
    struct Entry {
        double x, y;
        std::string label;
    };
    std::vector<Entry> legend;
    const double legend_top = y0 + ph + 50, row_h = 20, font = 12;
    double lx = x0, ly = legend_top;
    for (size_t b = 0; b <= bars; ++b) {  // the variants, then the chance line
        const std::string label = b == bars ? "chance (a uniform guess)"
                                            : rows[b]["variant"].get<std::string>() + " (" +
                                                  std::to_string(rows[b]["tuned_parameters"].get<int64_t>()) + " + head)";
        const double w = 16 + text_width(label, font) + 24;
        if (lx > x0 && lx + w > W - 10) {
            lx = x0;
            ly += row_h;
        }
        legend.push_back({lx, ly, label});
        lx += w;
    }
    const double H = ly + 30;

    // Text over bars gets a white outline, so it stays legible on any colour.
    const std::string halo = " stroke=\"white\" stroke-width=\"3\" paint-order=\"stroke\"";
    std::ostringstream s;
    s << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << W << "\" height=\"" << H
      << "\" font-family=\"sans-serif\" font-size=\"" << font << "\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
      << "<text x=\"" << W / 2 << "\" y=\"24\" text-anchor=\"middle\" font-size=\"15\">" << escape_markup(title) << "</text>\n";

    // Gridlines every 10%, each labelled.
    for (int k = static_cast<int>(std::lround(lo * 10)); k <= static_cast<int>(std::lround(hi * 10)); ++k) {
        const double y = y_of(k / 10.0);
        s << "<line x1=\"" << x0 << "\" x2=\"" << W - 20 << "\" y1=\"" << y << "\" y2=\"" << y
          << "\" stroke=\"#ddd\"/><text x=\"" << x0 - 8 << "\" y=\"" << y + 4 << "\" text-anchor=\"end\">" << k * 10
          << "%</text>\n";
    }

    for (size_t g = 0; g < groups; ++g) {
        const std::string name = g < tasks ? ex.tasks[g].name : "mean";
        const double gx = x0 + gw * static_cast<double>(g) + gw * 0.1;
        for (size_t b = 0; b < bars; ++b) {
            const auto& r = rows[b];
            const double m = mean_of(r, g), sd = sd_of(r, g);
            const double x = gx + bw * static_cast<double>(b), top = y_of(m);
            s << "<rect x=\"" << x << "\" y=\"" << top << "\" width=\"" << bw * 0.9 << "\" height=\"" << y0 + ph - top
              << "\" fill=\"" << colors[b % colors.size()] << "\"><title>" << escape_markup(r["variant"].get<std::string>()) << " "
              << escape_markup(name) << ": " << pct(m) << "%</title></rect>\n";
            const double cx = x + bw * 0.45;
            if (sd > 0)
                s << "<line x1=\"" << cx << "\" x2=\"" << cx << "\" y1=\"" << y_of(m + sd) << "\" y2=\"" << y_of(m - sd)
                  << "\" stroke=\"black\"/>\n";
            s << "<text x=\"" << cx << "\" y=\"" << y_of(m + sd) - 4 << "\" text-anchor=\"middle\" font-size=\"9\">" << pct(m)
              << "</text>\n";
        }
        // Chance: a dashed line across the group, labelled above its right end.
        const double cy = y_of(chance[g]), cx1 = gx - gw * 0.05, cx2 = gx + gw * 0.85;
        s << "<line x1=\"" << cx1 << "\" x2=\"" << cx2 << "\" y1=\"" << cy << "\" y2=\"" << cy
          << "\" stroke=\"black\" stroke-width=\"1.5\" stroke-dasharray=\"5,3\"/><text x=\"" << cx2 << "\" y=\"" << cy - 4
          << "\" text-anchor=\"end\" font-size=\"10\"" << halo << ">chance " << pct(chance[g]) << "%</text>\n";
        s << "<text x=\"" << gx + gw * 0.4 << "\" y=\"" << y0 + ph + 20 << "\" text-anchor=\"middle\">" << escape_markup(name)
          << "</text>\n";
    }

    // The y axis, with a break mark where it does not start at 0.
    s << "<line x1=\"" << x0 << "\" x2=\"" << x0 << "\" y1=\"" << y0 << "\" y2=\"" << y0 + ph << "\" stroke=\"#444\"/>\n";
    if (cut) {
        const double by = y0 + ph - 12;
        s << "<rect x=\"" << x0 - 6 << "\" y=\"" << by - 3 << "\" width=\"12\" height=\"6\" fill=\"white\"/>\n";
        for (double d : {-3.0, 3.0})
            s << "<line x1=\"" << x0 - 6 << "\" x2=\"" << x0 + 6 << "\" y1=\"" << by + d + 3 << "\" y2=\"" << by + d - 3
              << "\" stroke=\"#444\"/>\n";
        s << "<text x=\"" << x0 << "\" y=\"" << y0 - 10 << "\" font-size=\"10\" fill=\"#444\">axis starts at "
          << static_cast<int>(std::lround(lo * 100)) << "%</text>\n";
    }

    for (size_t b = 0; b <= bars; ++b) {
        const Entry& e = legend[b];
        if (b == bars) {
            s << "<line x1=\"" << e.x << "\" x2=\"" << e.x + 12 << "\" y1=\"" << e.y - 4 << "\" y2=\"" << e.y - 4
              << "\" stroke=\"black\" stroke-width=\"1.5\" stroke-dasharray=\"3,2\"/><text x=\"" << e.x + 16 << "\" y=\""
              << e.y << "\">" << escape_markup(e.label) << "</text>\n";
            continue;
        }
        s << "<rect x=\"" << e.x << "\" y=\"" << e.y - 10 << "\" width=\"12\" height=\"12\" fill=\"" << colors[b % colors.size()]
          << "\"/><text x=\"" << e.x + 16 << "\" y=\"" << e.y << "\">" << escape_markup(e.label) << "</text>\n";
    }
    s << "</svg>\n";
    return s.str();
}

}  // namespace coeffnet::tune
