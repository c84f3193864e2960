// The op table's checks, one ctest per op and device: backend/<op>/<device> (the rows are in
// op_table.hpp; ggml's tests/test-backend-ops.cpp is the model). For each row:
//   - double, on the CPU (the reference): the analytic gradient against central finite
//             differences (h = 1e-6) with coeffnet::gradcheck's fast mode (the one a custom op's
//             author uses), ||analytic - numeric||_inf / max(||analytic||_inf, ||numeric||_inf)
//             <= 1e-6 (GradcheckInput::max_rel_error), every differentiable input checked;
//   - float, on the device of the column: the float forward and backward against the double
//             ones (the float backward computes the same formulas in single precision), relative
//             error <= 1e-5 in value and in gradient (measured on 2026-11-29 on the CPU: worst
//             2.2e-7 in value, 1.6e-7 in gradient, both in coefficient attention; worst double FD
//             error 3e-9), output and gradients on that device.
// The loss is sum(out * R) for a fixed random R = randn(out.shape(), Generator(99)) (gradcheck's
// projection v), so every output element matters.
// Columns: one per device with a compute table when the program starts (this program has the
// CPU's; the CUDA and emulated columns come with their tables), and `alias`: the stand-in device
// of alias_backend.hpp, which runs the CPU table on device-labelled memory, so an op that computes
// or allocates anywhere but through its device's table fails there. Time per op: bench/backend_ops.
// Run one row: build/tests/coeffnet_tests -tc='backend/softmax/*' (or ctest -R backend/softmax/).
#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <deque>
#include <set>
#include <string>
#include <utility>

#include <coeffnet/autograd/gradcheck.hpp>
#include <coeffnet/coeffnet.hpp>

#include "alias_backend.hpp"
#include "op_table.hpp"
#include "test_util.hpp"

using namespace coeffnet;
using namespace coeffnet::test;
using namespace coeffnet::optable;

namespace {

double rel_err(const std::vector<double>& a, const std::vector<double>& b) {
    REQUIRE(a.size() == b.size());
    double d = 0;
    for (size_t i = 0; i < a.size(); ++i) d = std::max(d, std::abs(a[i] - b[i]));
    const double scale = std::max(max_abs(a), max_abs(b));
    return scale == 0 ? d : d / scale;
}

std::vector<double> as_double(const Tensor<float>& t) {
    const auto v = t.to_vector();
    return std::vector<double>(v.begin(), v.end());
}

void check_row(const OpRow& r, Device dev) {
    INFO("op: ", r.name, " on ", dev.str());
    const auto base = draw_inputs(r, 1234);
    std::vector<Tensor<double>> in;
    for (size_t i = 0; i < base.size(); ++i) {
        const bool d = r.diff.empty() || r.diff[i];
        in.push_back(base[i].clone().detach().set_requires_grad(d));
    }

    // double: coeffnet::gradcheck's fast mode (v^T J against central differences of sum(out * v),
    // v = randn(out.shape(), Generator(seed))); inputs without requires_grad are held fixed.
    GradcheckOptions fd;
    fd.fast = true;
    fd.seed = 99;
    fd.eps = 1e-6;
    fd.raise = false;  // the table's own bound below, not gradcheck's atol/rtol
    const GradcheckReport report = gradcheck(r.f64, in, fd);
    REQUIRE(report.inputs.size() == in.size());
    for (size_t i = 0; i < in.size(); ++i) {
        const GradcheckInput& g = report.inputs[i];
        INFO("input ", i, " shape ", shape_str(in[i].shape()), ": worst at element ", g.worst_element, ", analytic ",
             g.analytic, ", numeric ", g.numeric, "; ", report.message);
        CHECK(g.checked == in[i].requires_grad());
        if (in[i].requires_grad()) CHECK(g.max_rel_error <= 1e-6);
    }

    // The double backward that the float one is compared with, with the same weights R = v.
    const Tensor<double> out = r.f64(in);
    Generator rg(fd.seed);
    const Tensor<double> weights = Tensor<double>::randn(out.shape(), rg);
    sum(out * weights).backward();
    for (size_t i = 0; i < in.size(); ++i)
        if (in[i].requires_grad()) REQUIRE(in[i].grad().defined());

    // float, on the device: the same op in single precision against the double results.
    std::vector<Tensor<float>> inf;
    for (size_t i = 0; i < base.size(); ++i)
        inf.push_back(base[i].cast<float>().to(dev).set_requires_grad(in[i].requires_grad()));
    const Tensor<float> outf = r.f32(inf);
    REQUIRE(outf.device() == dev);
    sum(outf * weights.cast<float>().to(dev)).backward();
    CHECK(rel_err(as_double(outf), out.to_vector()) <= 1e-5);
    for (size_t i = 0; i < inf.size(); ++i) {
        if (!in[i].requires_grad()) continue;
        INFO("float gradient of input ", i);
        CHECK(inf[i].grad().device() == dev);
        CHECK(rel_err(as_double(inf[i].grad()), in[i].grad().to_vector()) <= 1e-5);
    }
}


// One doctest case per (row, device), registered at start-up as TEST_CASE does, named
// backend/<row>/<device>. A case is a plain function pointer, so case i is thunk<i>, which runs
// registered()[i]; kMaxCases bounds the table (a static_assert-like check fails the first case
// when the table outgrows it).
struct Registered {
    OpRow row;
    Device device;
    bool alias = false;  // run on the stand-in device of alias_backend.hpp
    std::string name;
};

std::deque<Registered>& registered() {
    static std::deque<Registered> r;  // a deque: names stay where they are as it grows
    return r;
}

constexpr size_t kMaxCases = 512;

template <size_t I>
void thunk() {
    const Registered& c = registered().at(I);
    if (!c.alias) return check_row(c.row, c.device);
    AliasDevice dev;
    check_row(c.row, Device::emulated());
}

template <size_t... I>
constexpr std::array<void (*)(), sizeof...(I)> make_thunks(std::index_sequence<I...>) {
    return {&thunk<I>...};
}

void register_too_many(size_t n) {
    static const std::string why = "backend/op-table-fits/cpu";
    static size_t count = n;
    doctest::detail::regTest(doctest::detail::TestCase(
                                 [] {
                                     INFO("the op table has ", count, " (row, device) cases; raise kMaxCases");
                                     CHECK(count <= kMaxCases);
                                 },
                                 __FILE__, __LINE__, doctest_detail_test_suite_ns::getCurrentTestSuite()) *
                             why.c_str());
}

const bool registered_cases = [] {
    static constexpr auto thunks = make_thunks(std::make_index_sequence<kMaxCases>{});
    const auto rows = op_table();
    for (const Device dev : computing_devices())
        for (const OpRow& r : rows) registered().push_back({r, dev, false, "backend/" + r.name + "/" + dev.str()});
    for (const OpRow& r : rows) registered().push_back({r, Device::emulated(), true, "backend/" + r.name + "/alias"});
    if (registered().size() > kMaxCases) register_too_many(registered().size());
    for (size_t i = 0; i < registered().size() && i < kMaxCases; ++i)
        doctest::detail::regTest(doctest::detail::TestCase(thunks[i], __FILE__, __LINE__,
                                                           doctest_detail_test_suite_ns::getCurrentTestSuite()) *
                                 registered()[i].name.c_str());
    return true;
}();

}  // namespace

TEST_CASE("the op table names each row once, and has a row for every op family") {
    REQUIRE(registered_cases);
    const auto rows = op_table();
    std::set<std::string> names;
    for (const auto& r : rows) CHECK_MESSAGE(names.insert(r.name).second, "row name twice: ", r.name);
    // A family is a row name or the part before a '/' (mul/broadcast is a mul row).
    for (const std::string family : {"add", "sub", "mul", "div", "exp", "log", "gelu", "sum", "mean", "max", "matmul",
                                     "linear", "softmax", "log_softmax", "cross_entropy", "layer_norm", "dropout",
                                     "embedding", "concat", "split", "mix_heads", "coeff_attention"}) {
        const bool found = std::any_of(names.begin(), names.end(), [&](const std::string& n) {
            return n == family || n.rfind(family + "/", 0) == 0;
        });
        CHECK_MESSAGE(found, "no row for ", family);
    }
}
