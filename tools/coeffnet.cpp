// tools/coeffnet.cpp: the `coeffnet` command-line tool.
//
//   coeffnet inspect FILE|DIR [--json]
//       a .safetensors file's tensors (name, dtype, shape), parameter count and metadata; for a
//       model directory also its config's key fields and its weight files (shards)
//   coeffnet vit predict --model DIR (--image FILE... | --pixels FILE) [--top K] [--adapter DIR] [--json]
//       a ViTForImageClassification's top-K labels for PNG/JPEG images (preprocessed as the
//       model's preprocessor_config.json says) or for the pixel_values tensor of a safetensors file
//   coeffnet vit filters --model DIR --image FILE [--adapter DIR] [--layer L] [--query T | --query-xy X,Y]
//                        --out FILE.png [--json] [--dump FILE] [--html FILE]
//       the graph-filter view of one layer: each head's attention map for one query token over
//       the image's patches, mixed by an adapter's alpha; see filters.hpp
//   coeffnet tune [--quick] [--ablation] [--data PATH] [--methods ...] [--json] ...
//       the main job: Coeff-Tuning against linear probing, LoRA, alpha + LoRA and full
//       fine-tuning on procedural few-shot tasks (or your data); see tune.hpp
//
// Exit codes: 0 success, 1 a bad file or model (the coeffnet::Error message on stderr), 2 bad
// arguments (the usage on stderr). Every exception is caught here: no input makes it crash.
#define COEFFNET_IMAGE_IMPLEMENTATION  // stb_image's implementation lives in this translation unit
#include <coeffnet/io/image.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <iostream>
#include <map>
#include <new>
#include <set>
#include <string>
#include <vector>

#include <coeffnet/coeffnet.hpp>
#include <coeffnet/io/adapter.hpp>
#include <coeffnet/io/hf.hpp>
#include <coeffnet/io/safetensors.hpp>
#include <coeffnet/models/vit.hpp>

#include "args.hpp"
#include "filters.hpp"
#include "tune.hpp"
#include "vit_input.hpp"

namespace fs = std::filesystem;
using namespace coeffnet;
using ojson = nlohmann::ordered_json;
using tools::Batch;
using tools::pixels_from_images;

namespace {

// ---- text helpers ---------------------------------------------------------------------------

// 1234567 -> "1,234,567".
std::string thousands(uint64_t v) {
    const std::string digits = std::to_string(v);
    std::string s;
    for (size_t i = 0; i < digits.size(); ++i) {
        if (i > 0 && (digits.size() - i) % 3 == 0) s += ',';
        s += digits[i];
    }
    return s;
}

// A name or value fit for a terminal: control characters escaped.
std::string printable(std::string_view s) {
    std::string out;
    for (const char ch : s) {
        const auto c = static_cast<unsigned char>(ch);
        if (c < 0x20 || c == 0x7f) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\x%02x", c);
            out += buf;
        } else {
            out += ch;
        }
    }
    return out;
}

// "layer.2" before "layer.10": digit runs compare as numbers.
bool natural_less(const std::string& a, const std::string& b) {
    size_t i = 0, j = 0;
    while (i < a.size() && j < b.size()) {
        if (std::isdigit(static_cast<unsigned char>(a[i])) && std::isdigit(static_cast<unsigned char>(b[j]))) {
            size_t ie = i, je = j;
            while (ie < a.size() && a[ie] == '0') ++ie;
            while (je < b.size() && b[je] == '0') ++je;
            size_t ae = ie, be = je;
            while (ae < a.size() && std::isdigit(static_cast<unsigned char>(a[ae]))) ++ae;
            while (be < b.size() && std::isdigit(static_cast<unsigned char>(b[be]))) ++be;
            if (ae - ie != be - je) return ae - ie < be - je;
            if (const int c = a.compare(ie, ae - ie, b, je, be - je); c != 0) return c < 0;
            i = ae;
            j = be;
        } else {
            if (a[i] != b[j]) return static_cast<unsigned char>(a[i]) < static_cast<unsigned char>(b[j]);
            ++i;
            ++j;
        }
    }
    if ((a.size() - i) != (b.size() - j)) return a.size() - i < b.size() - j;
    return a < b;
}

std::string dump(const ojson& j) { return j.dump(2, ' ', false, ojson::error_handler_t::replace); }

// A table with aligned columns; columns listed in `right` are right-aligned.
void print_table(std::ostream& os, const std::vector<std::vector<std::string>>& rows, const std::set<size_t>& right,
                 const std::string& indent = "  ") {
    std::vector<size_t> w;
    for (const auto& r : rows)
        for (size_t c = 0; c < r.size(); ++c) {
            if (w.size() <= c) w.push_back(0);
            w[c] = std::max(w[c], r[c].size());
        }
    for (const auto& r : rows) {
        std::string line = indent;
        for (size_t c = 0; c < r.size(); ++c) {
            const std::string pad(w[c] - r[c].size(), ' ');
            const bool last = c + 1 == r.size();
            line += right.count(c) ? pad + r[c] : r[c] + (last ? "" : pad);
            if (!last) line += "  ";
        }
        os << line << "\n";
    }
}

// ---- inspect --------------------------------------------------------------------------------

struct WeightFile {
    std::shared_ptr<const io::SafeTensors> st;
    std::string label;  // as shown: the file name in a directory, the path for a file
    int64_t parameters = 0;
};

struct TensorRow {
    const io::TensorInfo* info;
    size_t file;  // index into Inventory::files
};

struct Inventory {
    std::string path, kind;  // "safetensors" or "model_dir"
    std::string config_file, index_file;
    nlohmann::json config;  // null when there is none
    std::vector<WeightFile> files;
    std::vector<TensorRow> tensors;  // natural order by name
};

// The config fields worth a glance, in this order, when present (transformers, diffusers, PEFT).
const char* const kConfigKeys[] = {
    "model_type", "architectures", "_class_name", "peft_type", "method", "base_model_name_or_path",
    "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "hidden_act", "image_size",
    "patch_size", "num_channels", "qkv_bias", "vocab_size", "max_position_embeddings", "d_model", "encoder_layers",
    "decoder_layers", "encoder_attention_heads", "decoder_attention_heads", "encoder_ffn_dim", "decoder_ffn_dim",
    "in_channels", "out_channels", "sample_size", "block_out_channels", "layers_per_block", "cross_attention_dim",
    "attention_head_dim", "r", "lora_alpha", "alpha_dropout", "target_modules", "modules_to_save", "dtype",
    "torch_dtype"};

ojson config_summary(const nlohmann::json& cfg) {
    ojson out = ojson::object();
    if (!cfg.is_object()) return out;
    for (const char* key : kConfigKeys)
        if (cfg.contains(key) && !cfg[key].is_null()) out[key] = cfg[key];
    if (cfg.contains("id2label") && cfg["id2label"].is_object()) out["num_labels"] = cfg["id2label"].size();
    else if (cfg.contains("num_labels") && cfg["num_labels"].is_number_integer()) out["num_labels"] = cfg["num_labels"];
    return out;
}

void add_file(Inventory& inv, std::shared_ptr<const io::SafeTensors> st, std::string label) {
    WeightFile f{std::move(st), std::move(label), 0};
    for (const auto& t : f.st->tensors()) f.parameters += t.numel();
    inv.files.push_back(std::move(f));
}

void sort_rows(Inventory& inv) {
    std::stable_sort(inv.tensors.begin(), inv.tensors.end(),
                     [](const TensorRow& a, const TensorRow& b) { return natural_less(a.info->name, b.info->name); });
}

Inventory inspect_file(const fs::path& p) {
    Inventory inv;
    inv.path = p.string();
    inv.kind = "safetensors";
    add_file(inv, std::make_shared<io::SafeTensors>(io::SafeTensors::open(p)), p.string());
    for (const auto& t : inv.files[0].st->tensors()) inv.tensors.push_back({&t, 0});
    sort_rows(inv);
    return inv;
}

Inventory inspect_dir(const fs::path& dir) {
    Inventory inv;
    inv.path = dir.string();
    inv.kind = "model_dir";
    const bool hf = fs::exists(dir / "config.json") &&
                    (fs::exists(dir / "model.safetensors") || fs::exists(dir / "model.safetensors.index.json"));
    if (hf) {
        // A transformers directory: opened (and its index checked) as the models open it.
        const io::ModelDir md = io::ModelDir::open(dir);
        inv.config_file = "config.json";
        inv.config = md.config();
        if (!fs::exists(dir / "model.safetensors")) inv.index_file = "model.safetensors.index.json";
        std::map<const io::SafeTensors*, size_t> which;
        for (const auto& f : md.files()) {
            which[f.get()] = inv.files.size();
            add_file(inv, f, f->path().filename().string());
        }
        for (const auto& name : md.names()) {
            const io::SafeTensors& st = md.file_of(name);
            inv.tensors.push_back({&st.info(name), which.at(&st)});
        }
        // (Each file's own counts cover all it holds; the totals, the tensors the index names.)
    } else {
        // Anything else holding safetensors files (a PEFT adapter, a diffusers component): every
        // *.safetensors file, with config.json or adapter_config.json when there is one.
        for (const char* c : {"config.json", "adapter_config.json"})
            if (fs::exists(dir / c)) {
                inv.config_file = c;
                inv.config = io::read_json(dir / c);
                break;
            }
        std::vector<fs::path> found;
        for (const auto& e : fs::directory_iterator(dir)) {
            const std::string name = e.path().filename().string();
            if (e.is_regular_file() && name.size() > 12 && name.compare(name.size() - 12, 12, ".safetensors") == 0)
                found.push_back(e.path());
            if (name.size() > 23 && name.compare(name.size() - 23, 23, ".safetensors.index.json") == 0)
                inv.index_file = name;
        }
        check(!found.empty(), dir.string(),
              ": no safetensors files (expected config.json with model.safetensors or model.safetensors.index.json, "
              "or adapter_model.safetensors)");
        std::sort(found.begin(), found.end(), [](const fs::path& a, const fs::path& b) { return natural_less(a.string(), b.string()); });
        for (const auto& f : found) {
            add_file(inv, std::make_shared<io::SafeTensors>(io::SafeTensors::open(f)), f.filename().string());
            for (const auto& t : inv.files.back().st->tensors()) inv.tensors.push_back({&t, inv.files.size() - 1});
        }
    }
    sort_rows(inv);
    return inv;
}

ojson metadata_json(const io::SafeTensors& st) {
    if (!st.has_metadata()) return nullptr;
    ojson m = ojson::object();
    for (const auto& [k, v] : st.metadata_items()) m[k] = v;
    return m;
}

// The metadata every file shares (null when there is none or the files disagree).
ojson shared_metadata(const Inventory& inv) {
    ojson m = metadata_json(*inv.files[0].st);
    for (const auto& f : inv.files)
        if (metadata_json(*f.st) != m) return nullptr;
    return m;
}

struct Totals {
    int64_t parameters = 0;
    uint64_t bytes = 0;
    std::map<std::string, int64_t> by_dtype;
};

Totals totals(const Inventory& inv) {
    Totals t;
    for (const auto& row : inv.tensors) {
        t.parameters += row.info->numel();
        t.bytes += row.info->nbytes();
        t.by_dtype[std::string(io::dtype_name(row.info->dtype))] += row.info->numel();
    }
    return t;
}

ojson inventory_json(const Inventory& inv) {
    const Totals t = totals(inv);
    ojson j;
    j["path"] = inv.path;
    j["kind"] = inv.kind;
    if (inv.kind == "model_dir") {
        j["config_file"] = inv.config_file.empty() ? ojson(nullptr) : ojson(inv.config_file);
        j["config"] = inv.config.is_null() ? ojson(nullptr) : config_summary(inv.config);
        j["index_file"] = inv.index_file.empty() ? ojson(nullptr) : ojson(inv.index_file);
    }
    j["num_tensors"] = inv.tensors.size();
    j["num_parameters"] = t.parameters;
    j["data_bytes"] = t.bytes;
    ojson dt = ojson::object();
    for (const auto& [d, n] : t.by_dtype) dt[d] = n;
    j["parameters_by_dtype"] = dt;
    j["metadata"] = shared_metadata(inv);
    ojson files = ojson::array();
    for (const auto& f : inv.files) {
        files.push_back({{"file", f.label},
                         {"bytes", f.st->file_bytes().size()},
                         {"header_bytes", f.st->header_size()},
                         {"num_tensors", f.st->size()},
                         {"num_parameters", f.parameters},
                         {"metadata", metadata_json(*f.st)}});
    }
    j["files"] = files;
    ojson tensors = ojson::array();
    for (const auto& row : inv.tensors) {
        ojson e;
        e["name"] = row.info->name;
        e["dtype"] = std::string(io::dtype_name(row.info->dtype));
        e["shape"] = row.info->shape;
        e["parameters"] = row.info->numel();
        e["bytes"] = row.info->nbytes();
        if (inv.files.size() > 1) e["file"] = inv.files[row.file].label;
        tensors.push_back(std::move(e));
    }
    j["tensors"] = tensors;
    return j;
}

std::string metadata_text(const ojson& m) {
    if (m.is_null()) return "none";
    if (m.empty()) return "{} (empty)";
    std::string s;
    for (const auto& [k, v] : m.items()) s += (s.empty() ? "" : ", ") + printable(k) + "=" + printable(v.get<std::string>());
    return s;
}

std::string json_text(const nlohmann::json& v) {
    if (v.is_string()) return printable(v.get<std::string>());
    if (v.is_array()) {
        std::string s;
        for (const auto& x : v) s += (s.empty() ? "" : ", ") + json_text(x);
        return v.size() == 1 ? s : "[" + s + "]";
    }
    return printable(v.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
}

void print_inventory(std::ostream& os, const Inventory& inv) {
    const Totals t = totals(inv);
    std::vector<std::vector<std::string>> head;
    const bool dir = inv.kind == "model_dir";
    head.push_back({dir ? "directory" : "file", printable(inv.path)});
    if (dir) {
        if (inv.config.is_null()) {
            head.push_back({"config", "none"});
        } else {
            // "config.json: model_type vit, ..." over as many lines as it takes.
            std::string line = inv.config_file + ":";
            const char* key = "config";
            const ojson c = config_summary(inv.config);
            size_t n = 0;
            for (const auto& [k, v] : c.items()) {
                const std::string field = k + " " + json_text(v) + (++n < c.size() ? "," : "");
                if (line.size() + 1 + field.size() > 88) {
                    head.push_back({key, line});
                    key = "";
                    line.clear();
                }
                line += (line.empty() ? "" : " ") + field;
            }
            head.push_back({key, line});
        }
        std::string w = std::to_string(inv.files.size()) + (inv.files.size() == 1 ? " file" : " files");
        if (!inv.index_file.empty()) w += " (index " + inv.index_file + ")";
        head.push_back({"weights", w});
    } else {
        const auto& st = *inv.files[0].st;
        head.push_back({"size", thousands(st.file_bytes().size()) + " bytes (header " + thousands(st.header_size()) + " bytes)"});
    }
    std::string dtypes;
    for (const auto& [d, n] : t.by_dtype) dtypes += (dtypes.empty() ? "" : ", ") + d + " " + thousands(static_cast<uint64_t>(n));
    head.push_back({"tensors", thousands(inv.tensors.size())});
    head.push_back({"parameters", thousands(static_cast<uint64_t>(t.parameters)) + (dtypes.empty() ? "" : " (" + dtypes + ")")});
    head.push_back({"data", thousands(t.bytes) + " bytes"});
    head.push_back({"metadata", metadata_text(shared_metadata(inv))});
    print_table(os, head, {}, "");

    if (dir) {
        std::vector<std::vector<std::string>> files = {{"file", "bytes", "tensors", "parameters", "metadata"}};
        for (const auto& f : inv.files)
            files.push_back({printable(f.label), thousands(f.st->file_bytes().size()), thousands(f.st->size()),
                             thousands(static_cast<uint64_t>(f.parameters)), metadata_text(metadata_json(*f.st))});
        os << "\n";
        print_table(os, files, {1, 2, 3});
    }
    if (inv.tensors.empty()) return;
    const bool many = inv.files.size() > 1;
    std::vector<std::vector<std::string>> rows = {{"name", "dtype", "shape", "parameters"}};
    if (many) rows[0].push_back("file");
    for (const auto& row : inv.tensors) {
        rows.push_back({printable(row.info->name), std::string(io::dtype_name(row.info->dtype)), shape_str(row.info->shape),
                        thousands(static_cast<uint64_t>(row.info->numel()))});
        if (many) rows.back().push_back(printable(inv.files[row.file].label));
    }
    os << "\n";
    print_table(os, rows, {3});
}

int cmd_inspect(const cli::Args& a) {
    const fs::path p = a.str("PATH");
    std::error_code ec;
    const auto status = fs::status(p, ec);
    if (!fs::exists(status)) fail(p.string(), ": no such file or directory");
    const Inventory inv = fs::is_directory(status) ? inspect_dir(p) : inspect_file(p);
    if (a.flag("json")) std::cout << dump(inventory_json(inv)) << "\n";
    else print_inventory(std::cout, inv);
    return cli::kExitOk;
}

// ---- vit predict ----------------------------------------------------------------------------

Batch pixels_from_file(const fs::path& file) {
    const io::SafeTensors st = io::SafeTensors::open(file);
    Batch b;
    b.pixels = st.get_as<float>("pixel_values").contiguous();
    check(b.pixels.dim() == 4 && b.pixels.size(0) >= 1, file.string(),
          ": pixel_values must be [batch, channels, height, width] with batch >= 1, got ", shape_str(b.pixels.shape()));
    for (int64_t i = 0; i < b.pixels.size(0); ++i) b.inputs.push_back(file.string() + ":pixel_values[" + std::to_string(i) + "]");
    return b;
}

int cmd_vit_predict(const cli::Args& a) {
    const fs::path dir = a.str("model");
    nn::LoadReport report;
    auto model = models::load_vit_for_image_classification<float>(dir, &report);
    if (!report.unused.empty())
        std::cerr << "coeffnet: note: " << report.unused.size() << " tensor" << (report.unused.size() == 1 ? "" : "s")
                  << " of " << printable(dir.string()) << " unused by ViTForImageClassification, e.g. '"
                  << printable(report.unused.front()) << "'\n";
    if (a.has("adapter")) {
        models::apply_adapter(*model, a.str("adapter"));
        model->eval();
    }
    const models::ViTConfig& cfg = model->config();
    const Batch batch = a.has("pixels") ? pixels_from_file(a.str("pixels")) : pixels_from_images(a.all("image"), dir, cfg);
    const int64_t B = batch.pixels.size(0), L = cfg.num_labels();
    const int64_t K = std::min<int64_t>(a.integer("top"), L);

    std::vector<float> logits;
    {
        NoGrad no_grad;
        constexpr int64_t kChunk = 16;  // bounds the activations' memory for large batches
        for (int64_t b0 = 0; b0 < B; b0 += kChunk) {
            const Tensor<float> out = model->forward(batch.pixels.slice(0, b0, std::min(B, b0 + kChunk))).logits;
            const auto v = out.to_vector();
            logits.insert(logits.end(), v.begin(), v.end());
        }
    }
    check(static_cast<int64_t>(logits.size()) == B * L, "vit predict: expected ", B * L, " logits, got ", logits.size());

    ojson predictions = ojson::array();
    for (int64_t i = 0; i < B; ++i) {
        const float* l = logits.data() + i * L;
        double mx = -INFINITY, sum = 0;
        for (int64_t k = 0; k < L; ++k) mx = std::max(mx, static_cast<double>(l[k]));
        for (int64_t k = 0; k < L; ++k) sum += std::exp(static_cast<double>(l[k]) - mx);
        std::vector<int64_t> order(static_cast<size_t>(L));
        for (int64_t k = 0; k < L; ++k) order[static_cast<size_t>(k)] = k;
        std::stable_sort(order.begin(), order.end(), [&](int64_t p, int64_t q) {
            if (std::isnan(l[p]) || std::isnan(l[q])) return !std::isnan(l[p]) && std::isnan(l[q]);
            return l[p] > l[q];
        });
        ojson top = ojson::array();
        for (int64_t r = 0; r < K; ++r) {
            const int64_t k = order[static_cast<size_t>(r)];
            top.push_back({{"index", k},
                           {"label", cfg.id2label[static_cast<size_t>(k)]},
                           {"logit", static_cast<double>(l[k])},
                           {"prob", std::exp(static_cast<double>(l[k]) - mx) / sum}});
        }
        predictions.push_back({{"top", top}});
    }

    if (a.flag("json")) {
        ojson j;
        j["model"] = dir.string();
        j["adapter"] = a.has("adapter") ? ojson(a.str("adapter")) : ojson(nullptr);
        j["inputs"] = batch.inputs;
        j["predictions"] = predictions;
        std::cout << dump(j) << "\n";
        return cli::kExitOk;
    }
    std::cout << "model  " << printable(dir.string()) << ": ViTForImageClassification, " << L << " labels, input "
              << cfg.num_channels << " x " << cfg.image_height << " x " << cfg.image_width;
    if (a.has("adapter")) std::cout << ", adapter " << printable(a.str("adapter"));
    std::cout << "\n";
    for (int64_t i = 0; i < B; ++i) {
        std::cout << "\n" << printable(batch.inputs[static_cast<size_t>(i)]) << "\n";
        std::vector<std::vector<std::string>> rows = {{"rank", "label", "logit", "prob"}};
        for (const auto& e : predictions[static_cast<size_t>(i)]["top"]) {
            char logit[32], prob[32];
            std::snprintf(logit, sizeof logit, "%.5f", e["logit"].is_number() ? e["logit"].get<double>() : NAN);
            std::snprintf(prob, sizeof prob, "%.4f", e["prob"].is_number() ? e["prob"].get<double>() : NAN);
            rows.push_back({std::to_string(rows.size()), printable(e["label"].get<std::string>()), logit, prob});
        }
        print_table(std::cout, rows, {0, 2, 3});
    }
    return cli::kExitOk;
}

// ---- the command tree -----------------------------------------------------------------------

void declare(cli::Command& root) {
    root.description(
        "Inspects checkpoints (safetensors files and Hugging Face model directories) and runs models. Exit codes: 0 "
        "success, 1 a bad file or model, 2 bad arguments.");

    root.add("inspect", "list the tensors, parameter count and metadata of a safetensors file or model directory")
        .description(
            "For a .safetensors file: every tensor (name, dtype, shape), the total number of parameters (elements) and "
            "the header's metadata. For a model directory (config.json with model.safetensors or a sharded "
            "model.safetensors.index.json; or any directory of .safetensors files, such as an adapter): also the "
            "config's key fields and each weight file.")
        .positional("PATH", "a .safetensors file or a model directory")
        .flag("json", "print one JSON object instead of tables")
        .example("coeffnet inspect model.safetensors")
        .example("coeffnet inspect --json vit-base-patch16-224/")
        .run(cmd_inspect);

    cli::Command& vit = root.add("vit", "Vision Transformer commands");
    vit.add("predict", "classify images (or a pixel_values tensor) with a ViTForImageClassification checkpoint")
        .description(
            "Loads the model from DIR (config.json + safetensors, as save_pretrained writes it) and prints the top-K "
            "labels (config.json's id2label) with their logits and softmax probabilities for each input. Images "
            "(PNG or JPEG) are converted to RGB, resized and normalised as DIR/preprocessor_config.json says, or with "
            "ViTImageProcessor's defaults at the model's image size when there is none. --pixels takes the tensor "
            "named pixel_values, [batch, 3, height, width], from a safetensors file, and predicts every item.")
        .option("model", "DIR", "the model directory").required()
        .option("image", "FILE", "a PNG or JPEG image").repeatable()
        .option("pixels", "FILE", "a safetensors file holding pixel_values [batch, 3, height, width]")
        .one_of({"image", "pixels"}, true)
        .option("top", "K", "how many labels to show per input (at most the model's number of labels)")
        .integer(1)
        .default_value("5")
        .option("adapter", "DIR", "an adapter directory (adapter_model.safetensors) to load onto the model")
        .flag("json", R"(print {"model", "adapter", "inputs", "predictions": [{"top": [{"index", "label", "logit", "prob"}]}]})")
        .example("coeffnet vit predict --model vit-base-patch16-224 --image cat.jpg --top 3")
        .example("coeffnet vit predict --model DIR --pixels reference.safetensors --json")
        .run(cmd_vit_predict);
    tools::declare_filters(vit);

    tune::declare(root);
}

}  // namespace

int main(int argc, char** argv) {
    try {
        cli::Command root("coeffnet", "coeffnet's command-line tool.");
        declare(root);
        return root.main(argc, argv);
    } catch (const Error& e) {
        std::cerr << "coeffnet: error: " << e.what() << "\n";
    } catch (const std::bad_alloc&) {
        std::cerr << "coeffnet: error: out of memory\n";
    } catch (const std::exception& e) {
        std::cerr << "coeffnet: error: " << e.what() << "\n";
    } catch (...) {
        std::cerr << "coeffnet: error: unknown exception\n";
    }
    return cli::kExitError;
}
