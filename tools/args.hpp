// tools/args.hpp: a small command-line parser for coeffnet's tools: nested subcommands
// ("coeffnet vit predict"), --flag, --option VALUE (or --option=VALUE), typed values checked
// when parsed, positionals, required options and mutually exclusive groups, and --help text
// generated from the declarations.
//
//     cli::Command root("coeffnet", "coeffnet's command-line tool");
//     root.add("inspect", "list a checkpoint's tensors")
//         .positional("PATH", "a .safetensors file or a model directory")
//         .option("top", "K", "rows to show").integer(1).default_value("5")
//         .flag("json", "print one JSON object")
//         .run([](const cli::Args& a) { ... a.str("PATH"), a.integer("top"), a.flag("json") ...; return 0; });
//     return root.main(argc, argv);
//
// Exit codes: a handler's own (0 on success); 2 for a usage error (unknown, missing or bad
// arguments: the message and the usage line on stderr); --help prints the help on stdout and
// exits 0. Exceptions other than cli::UsageError pass through main() to the caller.
#pragma once

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <coeffnet/core/strings.hpp>

namespace coeffnet::cli {

inline constexpr int kExitOk = 0, kExitError = 1, kExitUsage = 2;

// Bad command-line arguments; main() prints it with the command's usage and exits 2.
class UsageError : public std::runtime_error {
public:
    explicit UsageError(const std::string& what) : std::runtime_error(what) {}
};

enum class Type { string, integer, number };

// The parsed arguments of one command.
class Args {
public:
    bool flag(std::string_view name) const { return values_.count(std::string(name)) > 0; }
    bool has(std::string_view name) const { return values_.count(std::string(name)) > 0; }

    // The option's or positional's value (the last one given), or its default; "" when neither.
    const std::string& str(std::string_view name) const {
        static const std::string none;
        const auto it = values_.find(std::string(name));
        if (it != values_.end() && !it->second.empty()) return it->second.back();
        const auto d = defaults_.find(std::string(name));
        return d != defaults_.end() ? d->second : none;
    }
    // Every value of a repeatable option, in order.
    std::vector<std::string> all(std::string_view name) const {
        const auto it = values_.find(std::string(name));
        return it != values_.end() ? it->second : std::vector<std::string>{};
    }
    // The value as an integer or a number (validated when parsed, so these do not fail then).
    int64_t integer(std::string_view name) const { return parse_integer(std::string(name), str(name)); }
    double number(std::string_view name) const { return parse_number(std::string(name), str(name)); }

    static int64_t parse_integer(const std::string& what, const std::string& text) {
        int64_t v = 0;
        const auto r = std::from_chars(text.data(), text.data() + text.size(), v);
        if (text.empty() || r.ec != std::errc() || r.ptr != text.data() + text.size())
            throw UsageError(what + ": expected an integer, got '" + text + "'");
        return v;
    }
    static double parse_number(const std::string& what, const std::string& text) {
        double v = 0;
        const auto r = std::from_chars(text.data(), text.data() + text.size(), v);
        if (text.empty() || r.ec != std::errc() || r.ptr != text.data() + text.size() || !std::isfinite(v))
            throw UsageError(what + ": expected a number, got '" + text + "'");
        return v;
    }

private:
    friend class Command;
    std::map<std::string, std::vector<std::string>> values_;  // flags map to {""}
    std::map<std::string, std::string> defaults_;
};

// One command: a group of subcommands, or a leaf with options and a handler.
class Command {
public:
    using Handler = std::function<int(const Args&)>;

    Command(std::string name, std::string summary) : name_(std::move(name)), summary_(std::move(summary)) {}

    // ---- declaring ------------------------------------------------------------------------

    // A subcommand; returns it, for declaring its options.
    Command& add(const std::string& name, const std::string& summary) {
        subs_.push_back(std::make_unique<Command>(name, summary));
        subs_.back()->parent_ = this;
        return *subs_.back();
    }
    Command& description(std::string text) {
        description_ = std::move(text);
        return *this;
    }
    Command& example(std::string line) {
        examples_.push_back(std::move(line));
        return *this;
    }
    Command& flag(const std::string& name, const std::string& help) { return declare(name, "", help, true); }

    Command& option(const std::string& name, const std::string& metavar, const std::string& help) {
        return declare(name, metavar, help, false);
    }
    // Modifiers of the option declared last: .option("top", "K", "...").integer(1).default_value("5")
    Command& required() {
        last_option().required = true;
        return *this;
    }
    Command& repeatable() {
        last_option().repeatable = true;
        return *this;
    }
    Command& default_value(std::string v) {
        last_option().default_value = std::move(v);
        return *this;
    }
    // The value must be an integer (a number), at least `min` when given.
    Command& integer(std::optional<double> min = std::nullopt) {
        Option& o = last_option();
        o.type = Type::integer;
        o.min = min;
        return *this;
    }
    Command& number(std::optional<double> min = std::nullopt) {
        Option& o = last_option();
        o.type = Type::number;
        o.min = min;
        return *this;
    }
    Command& positional(const std::string& name, const std::string& help) {
        positionals_.push_back({name, help});
        return *this;
    }
    // Exactly one of these options (`required`) or at most one.
    Command& one_of(std::vector<std::string> names, bool required) {
        groups_.push_back({std::move(names), required});
        return *this;
    }
    Command& run(Handler h) {
        handler_ = std::move(h);
        return *this;
    }

    // ---- text -----------------------------------------------------------------------------

    std::string path() const { return parent_ ? parent_->path() + " " + name_ : name_; }

    std::string usage() const {
        std::string u = "usage: " + path();
        if (!subs_.empty()) return u + " COMMAND [ARGS...]";
        // In declaration order; a group where its first member is declared.
        std::vector<bool> group_shown(groups_.size(), false);
        for (const auto& o : options_) {
            size_t g = groups_.size();
            for (size_t i = 0; i < groups_.size(); ++i)
                if (std::find(groups_[i].names.begin(), groups_[i].names.end(), o.name) != groups_[i].names.end()) g = i;
            if (g == groups_.size()) {
                u += o.required ? " " + synopsis(o) : " [" + synopsis(o) + "]";
                continue;
            }
            if (group_shown[g]) continue;
            group_shown[g] = true;
            std::string part;
            for (const auto& n : groups_[g].names) part += (part.empty() ? "" : " | ") + synopsis(options_[index_of(n)]);
            u += groups_[g].required ? " (" + part + ")" : " [" + part + "]";
        }
        for (const auto& p : positionals_) u += " " + p.name;
        return u;
    }

    std::string help() const {
        std::ostringstream os;
        os << usage() << "\n\n" << wrap(summary_ + (description_.empty() ? "" : "\n\n" + description_), 0) << "\n";
        std::vector<std::pair<std::string, std::string>> rows;
        if (!subs_.empty()) {
            os << "\ncommands:\n";
            for (const auto& [cmd, text] : leaves("")) rows.emplace_back(cmd, text);
            table(os, rows);
            os << "\nRun '" << path() << " COMMAND --help' for a command's options.\n";
            return os.str();
        }
        if (!positionals_.empty()) {
            os << "\narguments:\n";
            for (const auto& p : positionals_) rows.emplace_back(p.name, p.help);
            table(os, rows);
            rows.clear();
        }
        os << "\noptions:\n";
        for (const auto& o : options_) {
            std::string text = o.help;
            std::vector<std::string> notes;
            if (o.required) notes.push_back("required");
            if (!o.default_value.empty()) notes.push_back("default " + o.default_value);
            if (o.repeatable) notes.push_back("repeatable");
            for (size_t i = 0; i < notes.size(); ++i) text += (i ? ", " : " (") + notes[i] + (i + 1 == notes.size() ? ")" : "");
            rows.emplace_back(synopsis(o), text);
        }
        rows.emplace_back("-h, --help", "show this help and exit");
        table(os, rows);
        if (!examples_.empty()) {
            os << "\nexamples:\n";
            for (const auto& e : examples_) os << "  " << e << "\n";
        }
        return os.str();
    }

    // ---- running --------------------------------------------------------------------------

    // Parses argv[1..] and runs the chosen command; returns the exit code.
    int main(int argc, const char* const* argv, std::ostream& out = std::cout, std::ostream& err = std::cerr) const {
        std::vector<std::string> args;
        for (int i = 1; i < argc; ++i) args.emplace_back(argv[i]);
        return dispatch(args, 0, out, err);
    }

private:
    struct Option {
        std::string name, metavar, help;
        bool is_flag = false;
        Type type = Type::string;
        std::string default_value;  // shown in --help; Args::str returns it when the option is absent
        bool required = false;
        bool repeatable = false;
        std::optional<double> min;  // for integer and number options
    };

    Option& last_option() {
        if (options_.empty() || options_.back().is_flag) throw std::logic_error("cli: no option to modify in " + path());
        return options_.back();
    }
    struct Positional {
        std::string name, help;
    };
    struct Group {
        std::vector<std::string> names;
        bool required;
    };

    Command& declare(const std::string& name, const std::string& metavar, const std::string& help, bool is_flag) {
        if (name.empty() || name == "help" || has_option(name))
            throw std::logic_error("cli: option --" + name + " declared twice or reserved");
        Option o;
        o.name = name;
        o.metavar = metavar;
        o.help = help;
        o.is_flag = is_flag;
        options_.push_back(std::move(o));
        return *this;
    }
    bool has_option(const std::string& n) const {
        return std::any_of(options_.begin(), options_.end(), [&](const Option& o) { return o.name == n; });
    }
    size_t index_of(const std::string& n) const {
        for (size_t i = 0; i < options_.size(); ++i)
            if (options_[i].name == n) return i;
        throw std::logic_error("cli: no option --" + n);
    }
    static std::string synopsis(const Option& o) {
        return "--" + o.name + (o.is_flag ? "" : " " + o.metavar) + (o.repeatable ? "..." : "");
    }
    static bool is_help(const std::string& a) { return a == "--help" || a == "-h"; }

    // "vit predict" -> summary, for every leaf under this group.
    std::vector<std::pair<std::string, std::string>> leaves(const std::string& prefix) const {
        std::vector<std::pair<std::string, std::string>> out;
        for (const auto& s : subs_) {
            const std::string p = prefix.empty() ? s->name_ : prefix + " " + s->name_;
            if (s->subs_.empty()) out.emplace_back(p, s->summary_);
            else
                for (auto& l : s->leaves(p)) out.push_back(std::move(l));
        }
        return out;
    }

    static std::string wrap(const std::string& text, size_t indent, size_t width = 96) {
        std::string out, line;
        auto flush = [&]() {
            if (!out.empty()) out += "\n" + std::string(indent, ' ');
            out += line;
            line.clear();
        };
        std::istringstream paragraphs(text);
        std::string para;
        bool first = true;
        while (std::getline(paragraphs, para)) {
            if (!first && para.empty()) {
                flush();
                continue;
            }
            first = false;
            std::istringstream words(para);
            std::string w;
            while (words >> w) {
                if (!line.empty() && indent + line.size() + 1 + w.size() > width) flush();
                line += (line.empty() ? "" : " ") + w;
            }
            if (!line.empty()) flush();
        }
        return out;
    }
    static void table(std::ostream& os, const std::vector<std::pair<std::string, std::string>>& rows) {
        size_t w = 0;
        for (const auto& r : rows) w = std::max(w, r.first.size());
        w = std::min<size_t>(w, 28);
        for (const auto& [left, right] : rows) {
            os << "  " << left;
            if (left.size() > w) os << "\n" << std::string(w + 2, ' ');
            else os << std::string(w - left.size(), ' ');
            os << "  " << wrap(right, w + 4) << "\n";
        }
    }

    int usage_error(const std::string& message, std::ostream& err) const {
        err << path() << ": " << message << "\n" << usage() << "\nRun '" << path() << " --help' for more.\n";
        return kExitUsage;
    }

    int dispatch(const std::vector<std::string>& args, size_t at, std::ostream& out, std::ostream& err) const {
        if (subs_.empty()) {
            try {
                const std::optional<Args> parsed = parse(args, at);
                if (!parsed) {
                    out << help();
                    return kExitOk;
                }
                if (!handler_) throw std::logic_error("cli: no handler for " + path());
                return handler_(*parsed);
            } catch (const UsageError& e) {
                return usage_error(e.what(), err);
            }
        }
        if (at >= args.size()) return usage_error("missing command", err);
        const std::string& word = args[at];
        if (is_help(word)) {
            out << help();
            return kExitOk;
        }
        std::vector<std::string> names;
        for (const auto& s : subs_) {
            if (s->name_ == word) return s->dispatch(args, at + 1, out, err);
            names.push_back(s->name_);
        }
        if (word.rfind("-", 0) == 0) return usage_error("unknown option '" + word + "' (a command comes first)", err);
        return usage_error("unknown command '" + word + "'" + coeffnet::did_you_mean(word, names), err);
    }

    // The arguments from `at` on; std::nullopt when --help was asked for.
    std::optional<Args> parse(const std::vector<std::string>& args, size_t at) const {
        Args a;
        std::vector<std::string> positional;
        bool options_done = false;
        for (size_t i = at; i < args.size(); ++i) {
            const std::string& arg = args[i];
            if (options_done || arg == "-" || arg.rfind("-", 0) != 0) {
                positional.push_back(arg);
                continue;
            }
            if (arg == "--") {
                options_done = true;
                continue;
            }
            if (is_help(arg)) return std::nullopt;
            if (arg.rfind("--", 0) != 0) throw UsageError("unknown option '" + arg + "'");
            const size_t eq = arg.find('=');
            const std::string name = arg.substr(2, eq == std::string::npos ? std::string::npos : eq - 2);
            const Option* o = nullptr;
            for (const auto& opt : options_)
                if (opt.name == name) o = &opt;
            if (!o) {
                std::vector<std::string> names;
                for (const auto& opt : options_) names.push_back(opt.name);
                throw UsageError("unknown option '--" + name + "'" + coeffnet::did_you_mean(name, names, "--"));
            }
            std::string value;
            if (o->is_flag) {
                if (eq != std::string::npos) throw UsageError("--" + name + " takes no value");
            } else if (eq != std::string::npos) {
                value = arg.substr(eq + 1);
            } else {
                // The next word is the value, unless it is missing or is itself an option.
                const bool next_is_option = i + 1 < args.size() && args[i + 1].size() > 1 && args[i + 1][0] == '-' &&
                                            !(std::isdigit(static_cast<unsigned char>(args[i + 1][1])) || args[i + 1][1] == '.');
                if (i + 1 >= args.size() || next_is_option) throw UsageError("--" + name + " needs a value (" + o->metavar + ")");
                value = args[++i];
            }
            if (!o->is_flag) check_value(*o, value);
            auto& slot = a.values_[name];
            if (!slot.empty() && !o->repeatable) throw UsageError("--" + name + " given twice");
            slot.push_back(value);
        }
        for (const auto& o : options_) {
            if (!o.default_value.empty()) a.defaults_[o.name] = o.default_value;
            if (o.required && !a.has(o.name)) throw UsageError("missing --" + o.name + " " + o.metavar);
        }
        for (const auto& g : groups_) {
            std::vector<std::string> given;
            for (const auto& n : g.names)
                if (a.has(n)) given.push_back("--" + n);
            std::string list;
            for (size_t i = 0; i < g.names.size(); ++i)
                list += (i == 0 ? "--" : i + 1 == g.names.size() ? " or --" : ", --") + g.names[i];
            if (given.size() > 1) throw UsageError(given[0] + " and " + given[1] + " cannot be used together");
            if (given.empty() && g.required) throw UsageError("give one of " + list);
        }
        if (positional.size() > positionals_.size())
            throw UsageError("unexpected argument '" + positional[positionals_.size()] + "'");
        if (positional.size() < positionals_.size()) throw UsageError("missing " + positionals_[positional.size()].name);
        for (size_t i = 0; i < positional.size(); ++i) a.values_[positionals_[i].name] = {positional[i]};
        return a;
    }

    static void check_value(const Option& o, const std::string& value) {
        const std::string what = "--" + o.name;
        double v = 0;
        if (o.type == Type::integer) v = static_cast<double>(Args::parse_integer(what, value));
        else if (o.type == Type::number) v = Args::parse_number(what, value);
        else if (value.empty()) throw UsageError(what + ": the value is empty");
        if (o.type != Type::string && o.min && v < *o.min) {
            std::ostringstream m;
            m << what << ": must be at least " << *o.min << ", got " << value;
            throw UsageError(m.str());
        }
    }

    std::string name_, summary_, description_;
    std::vector<std::string> examples_;
    std::vector<Option> options_;
    std::vector<Positional> positionals_;
    std::vector<Group> groups_;
    std::vector<std::unique_ptr<Command>> subs_;
    const Command* parent_ = nullptr;
    Handler handler_;
};

}  // namespace coeffnet::cli
