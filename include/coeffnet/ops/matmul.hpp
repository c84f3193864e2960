// coeffnet/ops/matmul.hpp: matmul (batched, broadcasting) and linear, through the backend
// table's matmul (on the CPU: Eigen's GEMM, backend/cpu_gemm.hpp, operands read in place when one
// of their last two strides is 1, so the backward's A^T and B^T cost no copy; batches of small
// matrices run in parallel, one GEMM per thread; a single large GEMM uses Eigen's own threading).
// linear(x, W, b) = x W^T + b is one op so that a frozen W skips its weight-gradient GEMM, and the
// batch axes of x fold into one GEMM.
#pragma once

#include <algorithm>
#include <atomic>
#include <vector>

#include "../tensor/tensor.hpp"

namespace coeffnet {

// Counts GEMM calls (one per matmul/linear product, however many batch items); tests use it
// to check that frozen weights cost no weight-gradient work.
inline std::atomic<int64_t>& gemm_count() {
    static std::atomic<int64_t> count{0};
    return count;
}
// Adds up those products' floating-point operations, 2 M N K per batch item: bench/vit_step reports
// a step's GEMM work with it, and so the time the step would take with every GEMM at the FMA peak.
inline std::atomic<int64_t>& gemm_flops() {
    static std::atomic<int64_t> flops{0};
    return flops;
}

namespace detail {

// a [..., M, K] @ b [..., K, N] on their device, batch axes broadcast (no autograd).
template <class T>
Tensor<T> matmul_raw(const Tensor<T>& a, const Tensor<T>& b, const char* op) {
    const Shape& as = a.shape();
    const Shape& bs = b.shape();
    check(as.size() >= 2 && bs.size() >= 2, op, ": expects tensors of rank >= 2, got ", shape_str(as), " and ",
          shape_str(bs));
    const int64_t M = as[as.size() - 2], K = as.back(), K2 = bs[bs.size() - 2], N = bs.back();
    check(K == K2, op, ": inner dimensions differ: ", shape_str(as), " @ ", shape_str(bs), " (", K, " vs ", K2, ")");
    const Shape abatch(as.begin(), as.end() - 2), bbatch(bs.begin(), bs.end() - 2);
    const Shape batch = broadcast_shapes(abatch, bbatch, op);
    Shape out_shape = batch;
    out_shape.push_back(M);
    out_shape.push_back(N);
    const Device dev = same_device(op, a, b);
    Tensor<T> out = Tensor<T>::empty(out_shape, dev);
    gemm_count().fetch_add(1, std::memory_order_relaxed);
    gemm_flops().fetch_add(2 * M * N * K * shape_numel(batch), std::memory_order_relaxed);
    backend::ops<T>(dev).matmul(out, a, b);
    return out;
}

}  // namespace detail

// torch.matmul for rank >= 2: a [..., M, K] @ b [..., K, N] with broadcast batch axes.
template <class T>
Tensor<T> matmul(const Tensor<T>& a, const Tensor<T>& b) {
    check(a.defined() && b.defined(), "matmul: undefined operand");
    Tensor<T> out = detail::matmul_raw(a, b, "matmul");
    const Tensor<T> sa = a.detach(), sb = b.detach();
    return record<T>(out, "matmul", {a, b}, [sa, sb](const Tensor<T>& g, const std::vector<bool>& needs) {
        std::vector<Tensor<T>> r(2);
        if (needs[0]) r[0] = detail::sum_to(detail::matmul_raw(g, sb.mT(), "matmul backward"), sa.shape());
        if (needs[1]) {
            if (sb.dim() == 2 && sa.dim() > 2) {  // fold a's batch: dB = A_flat^T G_flat
                const int64_t K = sa.shape().back(), N = g.shape().back();
                r[1] = detail::matmul_raw(sa.reshape({-1, K}).mT(), g.reshape({-1, N}), "matmul backward");
            } else {
                r[1] = detail::sum_to(detail::matmul_raw(sa.mT(), g, "matmul backward"), sb.shape());
            }
        }
        return r;
    });
}

// PyTorch's F.linear: x [..., in] W^T [in, out] + b [out].
template <class T>
Tensor<T> linear(const Tensor<T>& x, const Tensor<T>& weight, const Tensor<T>& bias = Tensor<T>()) {
    check(x.defined() && weight.defined(), "linear: undefined operand");
    check(weight.dim() == 2, "linear: weight must be [out, in], got ", shape_str(weight.shape()));
    check(x.dim() >= 1 && x.shape().back() == weight.shape()[1], "linear: input ", shape_str(x.shape()),
          " does not match weight ", shape_str(weight.shape()), " (last axis must be ", weight.shape()[1], ")");
    const int64_t in = weight.shape()[1], out_f = weight.shape()[0];
    check(!bias.defined() || bias.shape() == Shape{out_f}, "linear: bias ",
          bias.defined() ? shape_str(bias.shape()) : std::string(), " does not match weight ",
          shape_str(weight.shape()), " (expected [", out_f, "])");
    const Tensor<T> x2 = detail::as_contiguous(x).reshape({-1, in}).detach();
    Tensor<T> y = detail::matmul_raw(x2, weight.detach().mT(), "linear");
    if (bias.defined()) {  // y += bias, in place
        detail::same_device("linear", x, bias);
        backend::ops<T>(y.device()).binary(backend::BinaryOp::add, y, y, bias);
    }
    Shape out_shape = x.shape();
    out_shape.back() = out_f;
    Tensor<T> out = detail::view_of(y, out_shape, contiguous_strides(out_shape), 0);
    const Tensor<T> sw = weight.detach();
    const Shape x_shape = x.shape();
    return record<T>(out, "linear", {x, weight, bias},
                     [x2, sw, x_shape, out_f](const Tensor<T>& g, const std::vector<bool>& needs) {
                         std::vector<Tensor<T>> r(3);
                         const Tensor<T> g2 = g.reshape({-1, out_f});
                         if (needs[0]) r[0] = detail::matmul_raw(g2, sw, "linear backward").reshape(x_shape);
                         if (needs[1]) r[1] = detail::matmul_raw(g2.mT(), x2, "linear backward");
                         if (needs[2]) r[2] = detail::sum_to(g2, {out_f});
                         return r;
                     });
}

}  // namespace coeffnet
