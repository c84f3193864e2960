// coeffnet/core/strings.hpp: small string helpers shared by error messages: names as they appear
// in messages, and the one "did you mean ..." rule of the library (the safetensors reader, model
// directories and the command-line parser all suggest names with it).
#pragma once

#include <algorithm>
#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace coeffnet {

// Levenshtein distance (insertions, deletions, substitutions), one row of memory.
inline size_t edit_distance(std::string_view a, std::string_view b) {
    std::vector<size_t> row(b.size() + 1);
    for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
    for (size_t i = 1; i <= a.size(); ++i) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= b.size(); ++j) {
            const size_t up = row[j];
            row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
            diag = up;
        }
    }
    return row[b.size()];
}

// The one rule for naming parameters by pattern (Module::train_only, optimiser group rules): a
// pattern matches a dotted name equal to it, every name below a module it names ("classifier"
// matches "classifier.weight", not "classifier2.weight"), or, written "*.suffix", every name that
// ends in ".suffix" ("*.coeff_alpha").
inline bool name_matches(std::string_view pattern, std::string_view name) {
    if (pattern.size() > 2 && pattern.substr(0, 2) == "*.")
        return name.size() >= pattern.size() - 1 && name.substr(name.size() - (pattern.size() - 1)) == pattern.substr(1);
    return name == pattern ||
           (name.size() > pattern.size() && name.substr(0, pattern.size()) == pattern && name[pattern.size()] == '.');
}

// Text made safe inside HTML, SVG or XML markup and attribute values: & < > " escaped.
inline std::string escape_markup(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (char c : s) {
        if (c == '&') out += "&amp;";
        else if (c == '<') out += "&lt;";
        else if (c == '>') out += "&gt;";
        else if (c == '"') out += "&quot;";
        else out += c;
    }
    return out;
}

// Concatenates strings by appending (`"literal" + std::string(...)` trips GCC 12's -Wrestrict).
template <class... S>
std::string cat(const S&... parts) {
    std::string out;
    (out += ... += parts);
    return out;
}

// A name as it appears in messages: quoted, control characters escaped, names past 120 bytes cut.
inline std::string quote_name(std::string_view s) {
    std::string out = "'";
    const size_t keep = std::min<size_t>(s.size(), 120);
    for (size_t i = 0; i < keep; ++i) {
        const auto c = static_cast<unsigned char>(s[i]);
        if (c < 0x20 || c == 0x7f) {
            static constexpr char hex[] = "0123456789abcdef";
            out += "\\x";
            out += hex[c >> 4];
            out += hex[c & 15];
        } else {
            out += static_cast<char>(c);
        }
    }
    if (keep < s.size()) out += "...";
    return out + "'";
}

// The candidates `word` may be a slip for, closest first (ties in name order), at most `max`.
// A candidate is close when it is
//   - within max(2, |word| / 3) edits of `word` (a typo: "encoder.wieght" for "encoder.weight",
//     "inspct" for "inspect"), or
//   - `word` with a dotted prefix added or dropped, however long (a missing or extra model prefix:
//     "encoder.x" for "vit.encoder.x", "base_model.model.x" for "x"); its distance is the
//     prefix's length, which is its edit distance.
// Words over 1000 bytes are matched by prefix only (the edit distance costs |word| x |name|).
template <class Names>
std::vector<std::string_view> closest_names(std::string_view word, const Names& candidates, size_t max = 3) {
    const size_t limit = std::max<size_t>(2, word.size() / 3);
    const auto dotted_suffix = [](std::string_view longer, std::string_view shorter) {
        return longer.size() > shorter.size() && longer.substr(longer.size() - shorter.size()) == shorter &&
               longer[longer.size() - shorter.size() - 1] == '.';
    };
    std::vector<std::pair<size_t, std::string_view>> close;
    for (const auto& c : candidates) {
        const std::string_view name(c);
        const size_t gap = name.size() > word.size() ? name.size() - word.size() : word.size() - name.size();
        if (dotted_suffix(name, word) || dotted_suffix(word, name))
            close.emplace_back(gap, name);
        else if (word.size() <= 1000 && gap <= limit)
            if (const size_t d = edit_distance(word, name); d <= limit) close.emplace_back(d, name);
    }
    std::sort(close.begin(), close.end());
    std::vector<std::string_view> out;
    for (size_t i = 0; i < close.size() && out.size() < max; ++i)
        if (i == 0 || close[i].second != close[i - 1].second) out.push_back(close[i].second);
    return out;
}

// " (did you mean 'a', 'b'?)" for closest_names(word, candidates), each name shown as `prefix`
// + name (the command-line parser passes "--" for options), quoted as quote_name quotes it; ""
// when no candidate is close.
template <class Names>
std::string did_you_mean(std::string_view word, const Names& candidates, std::string_view prefix = "") {
    const auto close = closest_names(word, candidates);
    if (close.empty()) return "";
    std::string out = " (did you mean ";
    for (size_t i = 0; i < close.size(); ++i) {
        if (i) out += ", ";
        out += quote_name(cat(prefix, close[i]));
    }
    return out + "?)";
}

}  // namespace coeffnet
