// tools/tune_table.cpp: the summary of `coeffnet tune` as a text table (see tune.hpp).
#include <cstdio>

#include "tune.hpp"

namespace coeffnet::tune {

void print_table(std::ostream& os, const Experiment& ex, const ojson& rows, const std::string& first_col) {
    std::vector<std::vector<std::string>> t;
    std::vector<std::string> head{first_col};
    for (const auto& task : ex.tasks) head.push_back(task.name);
    head.insert(head.end(), {"mean", "tuned", "time"});
    t.push_back(head);
    for (const auto& r : rows) {
        std::vector<std::string> line{r["variant"].get<std::string>()};
        for (const auto& task : ex.tasks) {
            const auto& c = r["tasks"][task.name];
            line.push_back(pct(c["mean"].get<double>()) + (c["seeds"].get<int>() > 1 ? " ± " + pct(c["sd"].get<double>()) : ""));
        }
        line.push_back(pct(r["mean"].get<double>()));
        line.push_back(std::to_string(r["tuned_parameters"].get<int64_t>()));
        char s[32];
        std::snprintf(s, sizeof s, "%.0f s", r["seconds"].get<double>());
        line.push_back(s);
        t.push_back(line);
    }
    std::vector<size_t> width(head.size(), 0);
    for (const auto& line : t)
        for (size_t i = 0; i < line.size(); ++i) {
            size_t w = 0;
            for (unsigned char ch : line[i]) w += (ch & 0xc0) != 0x80;  // count UTF-8 characters
            width[i] = std::max(width[i], w);
        }
    for (size_t li = 0; li < t.size(); ++li) {
        for (size_t i = 0; i < t[li].size(); ++i) {
            size_t w = 0;
            for (unsigned char ch : t[li][i]) w += (ch & 0xc0) != 0x80;
            const std::string pad(width[i] - w, ' ');
            os << (i == 0 ? t[li][i] + pad : "  " + pad + t[li][i]);
        }
        os << "\n";
    }
}

}  // namespace coeffnet::tune
