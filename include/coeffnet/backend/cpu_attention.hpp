// coeffnet/backend/cpu_attention.hpp: the CPU table's coefficient-attention primitives (Ops<T>'s
// "coefficient attention" section, backend/backend.hpp): alpha' and its backward, and the entry
// to fused attention, whose kernels (backend/cpu_attention_tiled.hpp) this file does not include.
//
// Why fused attention goes through a registered pointer: the tiled kernels are a fifth of what a
// small program compiles, and this file is part of every program (cpu.hpp, at the end of
// tensor.hpp). So they stay where they were compiled before the table existed: in the files that
// include ops/attention_tiled.hpp (registration before main) or instantiate a model
// (register_tiled_backend<T>(), ops/attention_tiled_impl.hpp), which fill tiled_attention_kernels<T>
// here; calling coeff_attention_tiled also does. A program with neither that asks the CPU table
// for fused attention gets the error that names the include, as the op's dispatch always gave.
// Part of tensor.hpp (through cpu.hpp); included alone, it includes tensor.hpp.
#include "../tensor/tensor.hpp"
#ifndef COEFFNET_BACKEND_CPU_ATTENTION_HPP
#define COEFFNET_BACKEND_CPU_ATTENTION_HPP

#include <cstdint>
#include <vector>

#include "../ops/coeff_spec.hpp"
#include "backend.hpp"

namespace coeffnet::backend::cpu_impl {

// The error of a program without the tiled kernels (ops/attention.hpp's dispatch says it too).
inline constexpr const char* tiled_attention_missing =
    "the tiled backend is not in this program: #include <coeffnet/ops/attention_tiled.hpp> in any one of its files";

// The fused-attention kernels of element type T, null until registered (constant-initialised:
// registration may run from any static initialiser).
template <class T>
struct TiledAttentionKernels {
    typename Ops<T>::AttentionSaved (*forward)(const Tensor<T>& out, const typename Ops<T>::AttentionArgs& a) = nullptr;
    void (*backward)(const typename Ops<T>::AttentionGrads& g, const Tensor<T>& dout,
                     const typename Ops<T>::AttentionArgs& a, const typename Ops<T>::AttentionSaved& saved) = nullptr;
};
template <class T>
inline TiledAttentionKernels<T> tiled_attention_kernels{};

template <class T>
const TiledAttentionKernels<T>& registered_tiled_kernels() {
    const TiledAttentionKernels<T>& k = tiled_attention_kernels<T>;
    check(k.forward != nullptr && k.backward != nullptr, "attention (CPU): ", tiled_attention_missing);
    return k;
}

template <class T>
typename Ops<T>::AttentionSaved coeff_attention_forward(const Tensor<T>& out, const typename Ops<T>::AttentionArgs& a) {
    return registered_tiled_kernels<T>().forward(out, a);
}

template <class T>
void coeff_attention_backward(const typename Ops<T>::AttentionGrads& g, const Tensor<T>& dout,
                              const typename Ops<T>::AttentionArgs& a, const typename Ops<T>::AttentionSaved& saved) {
    registered_tiled_kernels<T>().backward(g, dout, a, saved);
}

template <class T>
void alpha_prime(const Tensor<T>& out, const Tensor<T>& alpha, const typename Ops<T>::AttentionDraw& draw,
                 bool residual) {
    const int64_t H = alpha.shape()[0];
    const DropoutDraw<T>& d = draw;
    const std::vector<T> av = alpha.to_vector();
    T* o = out.data();
    for (int64_t h = 0; h < H; ++h)
        for (int64_t i = 0; i < H; ++i)
            o[h * H + i] = coeff::alpha_prime_element(d, H, h, i, av[static_cast<size_t>(h * H + i)], residual);
}

template <class T>
void alpha_prime_backward(const Tensor<T>& dalpha, const Tensor<T>& g, const typename Ops<T>::AttentionDraw& draw) {
    const DropoutDraw<T>& d = draw;
    const Tensor<T> gc = detail::as_contiguous(g);
    const T* pg = gc.data();
    T* o = dalpha.data();
    for (int64_t j = 0; j < dalpha.numel(); ++j) o[j] = pg[j] * d.multiplier(static_cast<uint64_t>(j));
}

}  // namespace coeffnet::backend::cpu_impl

#endif  // COEFFNET_BACKEND_CPU_ATTENTION_HPP
