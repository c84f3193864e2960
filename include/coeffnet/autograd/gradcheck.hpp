// coeffnet/autograd/gradcheck.hpp: checks a function's analytic gradients against central
// finite differences, like torch.autograd.gradcheck. Meant for custom ops (see record() in
// tensor/tensor.hpp): write the op, then
//
//     auto report = coeffnet::gradcheck([](const std::vector<Tensor<double>>& x) { return my_op(x[0], x[1]); },
//                                       {a, b});  // double tensors; those with requires_grad are checked
//
// Two modes, one comparison. For each checked input x_k (the others are held fixed):
//   - full (the default): the whole Jacobian J = d out / d x_k. Analytic row j from
//     coeffnet::grad(out, inputs, one-hot_j), numeric column i from (f(x + eps e_i) -
//     f(x - eps e_i)) / (2 eps). One backward per output element and two forwards per input
//     element, so keep the inputs small (tens of elements).
//   - fast (GradcheckOptions::fast, torch's fast_mode): the projection v^T J onto a fixed random
//     v, v = Tensor<double>::randn(f's output shape, Generator(opt.seed)) (seed 99 unless set).
//     Analytic from one coeffnet::grad(out, inputs, v), numeric element i from central
//     differences of the scalar sum(f(x) * v). One backward, and two forwards per input
//     element, whatever the output's size. Errors in column i of J are missed only if they
//     cancel in (v^T J)_i: probability zero for a normal v, though a partial cancellation
//     weakens the test (try another seed when in doubt). The library's op table
//     (tests/op_table.hpp, checked by tests/test_backend_ops.cpp) checks every op this way.
// Either way an element passes when |analytic - numeric| <= atol + rtol * |numeric| (PyTorch's
// test and defaults), and the report gives, per input, the largest absolute error and the
// relative error max|analytic - numeric| / max(max|analytic|, max|numeric|) over the compared
// elements (J's, or v^T J's).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "../tensor/tensor.hpp"

namespace coeffnet {

struct GradcheckOptions {
    double eps = 1e-6;   // finite-difference step
    double atol = 1e-5;  // absolute tolerance per compared element (of J, or of v^T J in fast mode)
    double rtol = 1e-3;  // relative tolerance per compared element (times |numeric|)
    bool raise = true;   // throw coeffnet::Error on failure (PyTorch's raise_exception); else only report
    bool fast = false;   // compare v^T J for one random v instead of the whole Jacobian J (see the top)
    uint64_t seed = 99;  // fast mode: v = Tensor<double>::randn(f's output shape, Generator(seed))
};

// One input's comparison. Indices are row-major flat indices (the worst element's multi-index is
// in the message). max_rel_error is max|analytic - numeric| over the compared values' scale
// (the largest |element| of J, or of v^T J in fast mode, analytic or numeric; the absolute error
// where both are zero).
struct GradcheckInput {
    bool checked = false;  // false: the input does not require grad and was held fixed
    bool passed = true;
    double max_abs_error = 0.0;
    double max_rel_error = 0.0;
    int64_t worst_element = -1;  // the input element and output element of the worst violation of
    int64_t worst_output = -1;   // the test (largest |a - n| / (atol + rtol |n|)), -1 when unchecked;
                                 // worst_output is -1 in fast mode too (v^T J has no output index)
    double analytic = 0.0;       // the compared values there (J's entries, or v^T J's)
    double numeric = 0.0;
};

struct GradcheckReport {
    bool passed = true;
    std::vector<GradcheckInput> inputs;  // one per input, in order
    std::string message;                 // the first failing input's description; empty on success
};

namespace detail {

inline std::string flat_to_index(int64_t flat, const Shape& shape) {
    std::vector<int64_t> idx(shape.size(), 0);
    for (size_t d = shape.size(); d-- > 0;) {
        const int64_t n = std::max<int64_t>(shape[d], 1);
        idx[d] = flat % n;
        flat /= n;
    }
    std::ostringstream os;
    os << '[';
    for (size_t d = 0; d < idx.size(); ++d) os << (d ? ", " : "") << idx[d];
    os << ']';
    return os.str();
}

}  // namespace detail

// f: any callable taking const std::vector<Tensor<double>>& and returning a Tensor<double>.
// The inputs are copied (f sees contiguous copies with the same requires_grad), so they are not
// changed, nor is any .grad() written. Throws if no input requires grad, if f returns an
// undefined tensor or a different shape for perturbed inputs, or (with raise) naming the mode,
// the first failing input, its worst element and the two values there.
template <class F>
GradcheckReport gradcheck(F&& f, const std::vector<Tensor<double>>& inputs, const GradcheckOptions& opt = {}) {
    check(opt.eps > 0.0 && std::isfinite(opt.eps), "gradcheck: eps must be positive and finite, got ", opt.eps);
    check(opt.atol >= 0.0 && opt.rtol >= 0.0, "gradcheck: atol and rtol must be non-negative, got atol ", opt.atol,
          ", rtol ", opt.rtol);
    std::vector<Tensor<double>> x;
    std::vector<Tensor<double>> wrt;  // the checked copies
    std::vector<size_t> wrt_index;
    for (size_t k = 0; k < inputs.size(); ++k) {
        check(inputs[k].defined(), "gradcheck: input ", k, " is undefined");
        Tensor<double> c = inputs[k].detach().clone();  // contiguous, no history
        if (inputs[k].requires_grad()) {
            c.set_requires_grad(true);
            wrt.push_back(c);
            wrt_index.push_back(k);
        }
        x.push_back(c);
    }
    check(!wrt.empty(), "gradcheck: no input requires grad (set requires_grad on the inputs to check)");

    Tensor<double> out = f(x);
    check(out.defined(), "gradcheck: f returned an undefined tensor");
    const Shape out_shape = out.shape();
    // The rows compared per input: J's m rows (row j: the output element j), or in fast mode the
    // one row v^T J. Each row is a vector-Jacobian product with its weights, one-hot_j or v.
    Tensor<double> v;
    std::vector<double> vv;
    if (opt.fast) {
        Generator gen(opt.seed);
        v = Tensor<double>::randn(out_shape, gen);
        vv = v.to_vector();
    }
    const int64_t rows = opt.fast ? 1 : out.numel();
    std::vector<std::vector<double>> analytic(wrt.size());  // [input][row * numel + i]
    for (size_t w = 0; w < wrt.size(); ++w) analytic[w].assign(static_cast<size_t>(rows * wrt[w].numel()), 0.0);
    if (out.requires_grad()) {  // else every analytic row stays zero
        for (int64_t j = 0; j < rows; ++j) {
            Tensor<double> weights = v;
            if (!opt.fast) {
                weights = Tensor<double>::zeros(out_shape);
                weights.data()[j] = 1.0;
            }
            const auto g = grad({out}, wrt, {weights}, /*retain_graph=*/true, /*allow_unused=*/true);
            for (size_t w = 0; w < wrt.size(); ++w) {
                if (!g[w].defined()) continue;
                const auto gv = g[w].to_vector();
                std::copy(gv.begin(), gv.end(), analytic[w].begin() + j * wrt[w].numel());
            }
        }
    }
    out = Tensor<double>();  // frees the graph before the inputs' data is perturbed

    // The numeric rows, and the comparison (the same for both modes).
    GradcheckReport report;
    report.inputs.resize(inputs.size());
    NoGrad no_grad;
    auto eval = [&]() {  // f's output, or in fast mode sum(f(x) * v): one value per row
        Tensor<double> y = f(x);
        check(y.defined() && y.shape() == out_shape, "gradcheck: f returned shape ",
              y.defined() ? shape_str(y.shape()) : std::string("(undefined)"), " for perturbed inputs, ",
              shape_str(out_shape), " for the originals");
        std::vector<double> r = y.to_vector();
        if (opt.fast) {
            double s = 0.0;
            for (size_t j = 0; j < r.size(); ++j) s += r[j] * vv[j];
            r.assign(1, s);
        }
        return r;
    };
    for (size_t w = 0; w < wrt.size(); ++w) {
        GradcheckInput& r = report.inputs[wrt_index[w]];
        r.checked = true;
        double* p = wrt[w].data();
        const int64_t n = wrt[w].numel();
        double worst_ratio = -1.0, scale = 0.0;
        for (int64_t i = 0; i < n; ++i) {
            const double keep = p[i];
            p[i] = keep + opt.eps;
            const auto up = eval();
            p[i] = keep - opt.eps;
            const auto down = eval();
            p[i] = keep;
            for (int64_t j = 0; j < rows; ++j) {
                const double num = (up[static_cast<size_t>(j)] - down[static_cast<size_t>(j)]) / (2.0 * opt.eps);
                const double ana = analytic[w][static_cast<size_t>(j * n + i)];
                const double diff = std::abs(ana - num);
                const double allowed = opt.atol + opt.rtol * std::abs(num);
                const double ratio = allowed > 0.0 ? diff / allowed : (diff > 0.0 ? INFINITY : 0.0);
                scale = std::max({scale, std::abs(ana), std::abs(num)});
                r.max_abs_error = std::max(r.max_abs_error, diff);
                if (!(diff <= allowed)) r.passed = false;  // NaN fails too
                if (ratio > worst_ratio || std::isnan(diff)) {
                    worst_ratio = std::isnan(diff) ? INFINITY : ratio;
                    r.worst_element = i;
                    r.worst_output = opt.fast ? -1 : j;
                    r.analytic = ana;
                    r.numeric = num;
                }
            }
        }
        r.max_rel_error = scale > 0.0 ? r.max_abs_error / scale : r.max_abs_error;
        if (!r.passed && report.passed) {
            report.passed = false;
            const Shape& in_shape = inputs[wrt_index[w]].shape();
            std::ostringstream os;
            os << "gradcheck: input " << wrt_index[w] << " (shape " << shape_str(in_shape)
               << "): the analytic gradient disagrees with finite differences in ";
            if (opt.fast)
                os << "fast mode (v^T J for v = randn(" << shape_str(out_shape) << ", Generator(" << opt.seed
                   << "))); worst at input element " << detail::flat_to_index(r.worst_element, in_shape) << " of v^T J";
            else
                os << "full mode (the whole Jacobian); worst at input element "
                   << detail::flat_to_index(r.worst_element, in_shape) << " for output element "
                   << detail::flat_to_index(r.worst_output, out_shape);
            os << ": analytic " << r.analytic << ", numeric " << r.numeric << " (|difference| "
               << std::abs(r.analytic - r.numeric) << " > atol + rtol * |numeric| = "
               << opt.atol + opt.rtol * std::abs(r.numeric) << "); max abs error " << r.max_abs_error
               << ", max relative error " << r.max_rel_error;
            report.message = os.str();
        }
    }
    if (opt.raise && !report.passed) fail(report.message);
    return report;
}

}  // namespace coeffnet
