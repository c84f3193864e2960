// src/cuda/attention.cu: host launchers of the fused coefficient attention
// (kernels/coeff_attention.cuh; API and semantics in include/coeffnet/cuda/attention.hpp).
#include <cuda_runtime.h>
#include <algorithm>

#include <vector>

#include "coeffnet/core/error.hpp"
#include "coeffnet/core/rng.hpp"
#include "coeffnet/cuda/attention.hpp"
#include "coeffnet/cuda/check.hpp"
#include "coeffnet/cuda/launchers.hpp"
#include "coeffnet/cuda/runtime.hpp"
#include "coeffnet/cuda/tensor.hpp"
#include "coeffnet/ops/attention_shapes.hpp"
#include "coeffnet/ops/coeff_spec.hpp"
#include "kernels/coeff_attention.cuh"

#if defined(COEFFNET_EMULATED)
// GCC does not instantiate a defaulted function template named only as a template argument
// (launch<attn::dalpha_reduce_kernel<>>); nvcc's launch does. Instantiated by hand for the emulator.
template void coeffnet::cuda::attn::dalpha_reduce_kernel<void>(int64_t, int64_t, const float*, coeffnet::DropoutDraw<float>,
                                                              float*);
#endif

namespace coeffnet::cuda {

namespace {

template <class T>
struct dev {
    using type = T;
};
template <>
struct dev<bfloat16_t> {
    using type = __nv_bfloat16;
};
template <>
struct dev<half_t> {
    using type = __half;
};
template <class T>
using dev_t = typename dev<T>::type;

template <class T>
const dev_t<T>* dptr(const DeviceTensor<T>& t) {
    return reinterpret_cast<const dev_t<T>*>(t.data());
}
template <class T>
dev_t<T>* dptr_mut(DeviceTensor<T>& t) {
    return reinterpret_cast<dev_t<T>*>(t.data());
}

int64_t smem_limit() {
    int dev_id = 0, optin = 0;
    COEFFNET_CUDA_CHECK(cudaGetDevice(&dev_id));
    COEFFNET_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev_id));
    return optin;
}
// The device's limit, or the caller's smaller cap (AttentionConfig::max_smem).
int64_t capped_smem(int64_t cap) { return cap > 0 ? std::min(cap, smem_limit()) : smem_limit(); }

struct Sizes {
    int64_t B, H, N, M, d, dv;
};

template <class T>
Sizes check_inputs(const DeviceTensor<T>& q, const DeviceTensor<T>& k, const DeviceTensor<T>& v,
                   const DeviceTensor<uint8_t>* key_mask, const char* op) {
    check(q.defined() && k.defined() && v.defined(), op, ": undefined q, k or v");
    const Shape &qs = q.shape(), &ks = k.shape(), &vs = v.shape();
    coeffnet::check_attention_shapes(qs, ks, vs, op);
    if (key_mask && key_mask->defined())
        check(key_mask->shape() == Shape{qs[0], ks[2]}, op, ": key mask ", shape_str(key_mask->shape()),
              " must be [batch, keys] = [", qs[0], ", ", ks[2], "]");
    return {qs[0], qs[1], qs[2], ks[2], qs[3], vs[3]};
}

// Opts a kernel into more than 48 KiB of dynamic shared memory (idempotent, cheap).
template <class K>
void allow_smem(K kernel, int64_t bytes) {
    if (bytes > 48 * 1024)
        COEFFNET_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
}

template <class D>
attn::Params<D> base_params(const Sizes& s, const CoeffAttentionSaved& sv, const DeviceTensor<uint8_t>* key_mask) {
    attn::Params<D> p;
    p.B = s.B, p.H = s.H, p.N = s.N, p.M = s.M, p.d = s.d, p.dv = s.dv;
    p.scale = sv.scale;
    p.causal = sv.causal;
    p.drop = sv.drop;
    p.alpha_p = sv.alpha_prime.data();
    p.key_mask = key_mask && key_mask->defined() ? key_mask->data() : nullptr;
    return p;
}

unsigned grid_1d(int64_t n, int threads) {
    const int64_t g = (n + threads - 1) / threads;
    const int64_t cap = max_grid_for_testing() > 0 ? std::min<int64_t>(65535, max_grid_for_testing()) : 65535;
    return static_cast<unsigned>(g < cap ? (g > 0 ? g : 1) : cap);
}

}  // namespace

template <class T>
CoeffAttentionOutput<T> coeff_attention_forward(const DeviceTensor<T>& q, const DeviceTensor<T>& k,
                                                const DeviceTensor<T>& v, const DeviceTensor<float>& alpha,
                                                const AttentionConfig& cfg, const DeviceTensor<uint8_t>* key_mask) {
    const char* op = "cuda::coeff_attention_forward";
    require(op);
    using D = dev_t<T>;
    const Sizes s = check_inputs(q, k, v, key_mask, op);
    const bool mix = alpha.defined();
    if (mix)
        check(alpha.shape() == Shape{s.H, s.H}, op, ": alpha ", shape_str(alpha.shape()), " must be [heads, heads] = [",
              s.H, ", ", s.H, "]");
    const AttentionPlan plan =
        plan_coeff_attention(s.B, s.H, s.N, s.M, s.d, s.dv, capped_smem(cfg.max_smem), static_cast<int64_t>(sizeof(T)));
    cudaStream_t stream = Context::get().stream();
    // The generator draws in the CPU op's order (ops/coeff_spec.hpp): alpha's H x H mask, then Phat's.
    const coeff::Draws<float> draws = coeff::reserve_draws<float>(cfg.coeff, mix, cfg.attn_dropout, cfg.training,
                                                                  cfg.generator, s.B, s.H, s.N, s.M, op,
                                                                  "AttentionConfig::generator");

    CoeffAttentionOutput<T> r;
    CoeffAttentionSaved& sv = r.saved;
    sv.mix = mix;
    sv.scale = static_cast<float>(coeff::score_scale(cfg.scale, s.d));
    sv.causal = cfg.causal;
    sv.alpha_draw = draws.alpha;
    sv.drop = draws.phat;
    sv.alpha_prime = DeviceTensor<float>::empty({s.H, s.H});
    if (mix) {
        alpha_prime(alpha, sv.alpha_prime, draws.alpha, cfg.coeff.alpha_residual);
    } else {
        std::vector<float> eye(static_cast<size_t>(s.H * s.H), 0.0f);
        for (int64_t h = 0; h < s.H; ++h) eye[static_cast<size_t>(h * s.H + h)] = 1.0f;
        sv.alpha_prime.copy_from_host(eye.data());
    }

    r.out = DeviceTensor<T>::empty({s.B, s.H, s.N, s.dv});
    sv.lse = DeviceTensor<float>::empty({s.B, s.H, s.N});
    attn::Params<D> p = base_params<D>(s, sv, key_mask);
    p.q = dptr(q), p.k = dptr(k), p.v = dptr(v);
    p.out = dptr_mut(r.out);
    p.lse = sv.lse.data();
    sv.tensor_cores = cfg.tensor_cores;
    sv.max_smem = cfg.max_smem;
    if constexpr (sizeof(T) == 2) {
        if (plan.use_tc && cfg.tensor_cores) {
            if (plan.fwd_lse_tc.grid > 0) {
                const auto pa = attn::with_plan(p, plan.fwd_lse_tc);
                check(attention_plan::tc_lse_layout(pa.bq, pa.bk, pa.d, 2).bytes == plan.fwd_lse_tc.smem_bytes, op,
                      ": plan/kernel shared-memory mismatch (fwd_lse_tc)");
                allow_smem(attn::fwd_lse_tc_kernel<D>, plan.fwd_lse_tc.smem_bytes);
                launch<attn::fwd_lse_tc_kernel<D>>(static_cast<unsigned>(plan.fwd_lse_tc.grid), plan.tc_threads,
                                             plan.fwd_lse_tc.smem_bytes, stream)(pa);
                COEFFNET_LAUNCH_CHECK("coeff_attention fwd_lse_tc_kernel");
            }
            if (plan.fwd_out_tc.grid > 0) {
                const auto pt = attn::with_plan(p, plan.fwd_out_tc);
                check(attn::tc_layout(pt, 2).bytes == plan.fwd_out_tc.smem_bytes, op,
                      ": plan/kernel shared-memory mismatch (fwd_out_tc)");
                allow_smem(attn::fwd_out_tc_kernel<D>, plan.fwd_out_tc.smem_bytes);
                launch<attn::fwd_out_tc_kernel<D>>(static_cast<unsigned>(plan.fwd_out_tc.grid), plan.tc_threads,
                                             plan.fwd_out_tc.smem_bytes, stream)(pt);
                COEFFNET_LAUNCH_CHECK("coeff_attention fwd_out_tc_kernel");
            }
            return r;
        }
    }
    if (plan.fwd_lse.grid > 0) {
        const auto pa = attn::with_plan(p, plan.fwd_lse);
        check(attn::smem_fwd_lse(pa) * 4 == plan.fwd_lse.smem_bytes, op, ": plan/kernel shared-memory mismatch (fwd_lse)");
        allow_smem(attn::fwd_lse_kernel<D>, plan.fwd_lse.smem_bytes);
        launch<attn::fwd_lse_kernel<D>>(static_cast<unsigned>(plan.fwd_lse.grid), plan.threads, plan.fwd_lse.smem_bytes, stream)(pa);
        COEFFNET_LAUNCH_CHECK("coeff_attention fwd_lse_kernel");
    }
    if (plan.fwd_out.grid > 0) {
        const auto pb = attn::with_plan(p, plan.fwd_out);
        check(attn::smem_fwd_out(pb) * 4 == plan.fwd_out.smem_bytes, op, ": plan/kernel shared-memory mismatch (fwd_out)");
        allow_smem(attn::fwd_out_kernel<D>, plan.fwd_out.smem_bytes);
        launch<attn::fwd_out_kernel<D>>(static_cast<unsigned>(plan.fwd_out.grid), plan.threads, plan.fwd_out.smem_bytes, stream)(pb);
        COEFFNET_LAUNCH_CHECK("coeff_attention fwd_out_kernel");
    }
    return r;
}

template <class T>
CoeffAttentionGrads<T> coeff_attention_backward(const DeviceTensor<T>& q, const DeviceTensor<T>& k,
                                                const DeviceTensor<T>& v, const DeviceTensor<T>& dout,
                                                const CoeffAttentionSaved& sv, const DeviceTensor<uint8_t>* key_mask) {
    const char* op = "cuda::coeff_attention_backward";
    require(op);
    using D = dev_t<T>;
    const Sizes s = check_inputs(q, k, v, key_mask, op);
    check(dout.defined() && dout.shape() == Shape{s.B, s.H, s.N, s.dv}, op, ": dout ",
          dout.defined() ? shape_str(dout.shape()) : std::string("undefined"), " must be ",
          shape_str({s.B, s.H, s.N, s.dv}));
    check(sv.lse.defined() && sv.lse.shape() == Shape{s.B, s.H, s.N} && sv.alpha_prime.defined() &&
              sv.alpha_prime.shape() == Shape{s.H, s.H},
          op, ": the saved state does not belong to these inputs (lse ",
          sv.lse.defined() ? shape_str(sv.lse.shape()) : std::string("undefined"), ")");
    const AttentionPlan plan =
        plan_coeff_attention(s.B, s.H, s.N, s.M, s.d, s.dv, capped_smem(sv.max_smem), static_cast<int64_t>(sizeof(T)));
    const bool tc = sizeof(T) == 2 && plan.use_tc && sv.tensor_cores;
    const AttentionKernelPlan& kp = tc ? plan.bwd_pre_tc : plan.bwd_pre;
    const AttentionKernelPlan& kk = tc ? plan.bwd_kv_tc : plan.bwd_kv;
    cudaStream_t stream = Context::get().stream();

    CoeffAttentionGrads<T> g;
    g.dk = DeviceTensor<T>::empty({s.B, s.H, s.M, s.d});
    g.dv = DeviceTensor<T>::empty({s.B, s.H, s.M, s.dv});
    DeviceTensor<float> dq_acc = DeviceTensor<float>::zeros({s.B, s.H, s.N, s.d});
    DeviceTensor<float> Dsum = DeviceTensor<float>::empty({s.B, s.H, s.N});
    DeviceTensor<float> part = DeviceTensor<float>::empty({kp.grid, s.H * s.H});
    DeviceTensor<float> dalpha = DeviceTensor<float>::empty({s.H, s.H});

    attn::Params<D> p = base_params<D>(s, sv, key_mask);
    p.q = dptr(q), p.k = dptr(k), p.v = dptr(v), p.dout = dptr(dout);
    p.lse = sv.lse.data();
    p.D = Dsum.data();
    p.dalpha_part = part.data();
    p.dq_acc = dq_acc.data();
    p.dk = dptr_mut(g.dk);
    p.dvv = dptr_mut(g.dv);
    bool launched = false;
    if constexpr (sizeof(T) == 2) {
        if (tc && kp.grid > 0) {
            const auto pa = attn::with_plan(p, kp);
            check(attention_plan::tc_bwd_layout(false, pa.bq, pa.bk, 1, s.H, s.d, s.dv, 2).bytes == kp.smem_bytes, op,
                  ": plan/kernel shared-memory mismatch (bwd_pre_tc)");
            allow_smem(attn::bwd_pre_tc_kernel<D>, kp.smem_bytes);
            launch<attn::bwd_pre_tc_kernel<D>>(static_cast<unsigned>(kp.grid), plan.tc_threads, kp.smem_bytes, stream)(pa);
            COEFFNET_LAUNCH_CHECK("coeff_attention bwd_pre_tc_kernel");
        }
        launched = tc;
    }
    if (!launched && plan.bwd_pre.grid > 0) {
        const auto pa = attn::with_plan(p, plan.bwd_pre);
        check(attn::smem_bwd_pre(pa) * 4 == plan.bwd_pre.smem_bytes, op, ": plan/kernel shared-memory mismatch (bwd_pre)");
        allow_smem(attn::bwd_pre_kernel<D>, plan.bwd_pre.smem_bytes);
        launch<attn::bwd_pre_kernel<D>>(static_cast<unsigned>(plan.bwd_pre.grid), plan.threads, plan.bwd_pre.smem_bytes, stream)(pa);
        COEFFNET_LAUNCH_CHECK("coeff_attention bwd_pre_kernel");
    }
    if (sv.mix) {
        launch<attn::dalpha_reduce_kernel<>>(grid_1d(s.H * s.H, 256), 256, 0, stream)(s.H * s.H, kp.grid, part.data(),
                                                                                    sv.alpha_draw, dalpha.data());
        COEFFNET_LAUNCH_CHECK("coeff_attention dalpha_reduce_kernel");
        g.dalpha = dalpha;
    }
    launched = false;
    if constexpr (sizeof(T) == 2) {
        if (tc && kk.grid > 0) {
            const auto pb = attn::with_plan(p, kk);
            check(attention_plan::tc_bwd_layout(true, pb.bq, pb.bk, pb.group, s.H, s.d, s.dv, 2).bytes == kk.smem_bytes,
                  op, ": plan/kernel shared-memory mismatch (bwd_kv_tc)");
            allow_smem(attn::bwd_kv_tc_kernel<D>, kk.smem_bytes);
            launch<attn::bwd_kv_tc_kernel<D>>(static_cast<unsigned>(kk.grid), plan.tc_threads, kk.smem_bytes, stream)(pb);
            COEFFNET_LAUNCH_CHECK("coeff_attention bwd_kv_tc_kernel");
        }
        launched = tc;
    }
    if (!launched && plan.bwd_kv.grid > 0) {
        const auto pb = attn::with_plan(p, plan.bwd_kv);
        check(attn::smem_bwd_kv(pb) * 4 == plan.bwd_kv.smem_bytes, op, ": plan/kernel shared-memory mismatch (bwd_kv)");
        allow_smem(attn::bwd_kv_kernel<D>, plan.bwd_kv.smem_bytes);
        launch<attn::bwd_kv_kernel<D>>(static_cast<unsigned>(plan.bwd_kv.grid), plan.threads, plan.bwd_kv.smem_bytes, stream)(pb);
        COEFFNET_LAUNCH_CHECK("coeff_attention bwd_kv_kernel");
    }
    if constexpr (std::is_same_v<T, float>) {
        g.dq = dq_acc;
    } else {
        g.dq = DeviceTensor<T>::empty({s.B, s.H, s.N, s.d});
        const int64_t n = g.dq.numel();
        if (n > 0) {
            launch<attn::f32_to_kernel<D>>(grid_1d(n, 256), 256, 0, stream)(dq_acc.data(), dptr_mut(g.dq), n);
            COEFFNET_LAUNCH_CHECK("coeff_attention f32_to_kernel (dq)");
        }
    }
    return g;
}

template <class T>
void tile_mma_for_testing(const DeviceTensor<T>& a, bool a_col_major, const DeviceTensor<T>& b, bool b_col_major,
                          DeviceTensor<float>& c) {
    const char* op = "cuda::tile_mma_for_testing";
    require(op);
    check(a.shape().size() == 2 && b.shape().size() == 2, op, ": a ", shape_str(a.shape()), " and b ",
          shape_str(b.shape()), " must be matrices");
    const int64_t K = a_col_major ? a.shape()[0] : a.shape()[1];
    check(K > 0 && K % 16 == 0 && a.shape() == (a_col_major ? Shape{K, 16} : Shape{16, K}) &&
              b.shape() == (b_col_major ? Shape{16, K} : Shape{K, 16}) && c.shape() == Shape{16, 16},
          op, ": shapes a ", shape_str(a.shape()), ", b ", shape_str(b.shape()), ", c ", shape_str(c.shape()),
          " do not make a [16, K] x [K, 16] product with K a multiple of 16");
    launch<attn::tile_mma_test_kernel<dev_t<T>>>(1, 32, 0, Context::get().stream())(
        dptr(a), a.shape()[1], a_col_major, dptr(b), b.shape()[1], b_col_major, K / 16, c.data());
    COEFFNET_LAUNCH_CHECK("tile_mma_test_kernel");
}
template void tile_mma_for_testing<bfloat16_t>(const DeviceTensor<bfloat16_t>&, bool, const DeviceTensor<bfloat16_t>&,
                                               bool, DeviceTensor<float>&);
template void tile_mma_for_testing<half_t>(const DeviceTensor<half_t>&, bool, const DeviceTensor<half_t>&, bool,
                                           DeviceTensor<float>&);

#define COEFFNET_INSTANTIATE_ATTENTION(T)                                                                             \
    template CoeffAttentionOutput<T> coeff_attention_forward<T>(const DeviceTensor<T>&, const DeviceTensor<T>&,       \
                                                                const DeviceTensor<T>&, const DeviceTensor<float>&,   \
                                                                const AttentionConfig&, const DeviceTensor<uint8_t>*); \
    template CoeffAttentionGrads<T> coeff_attention_backward<T>(const DeviceTensor<T>&, const DeviceTensor<T>&,       \
                                                                const DeviceTensor<T>&, const DeviceTensor<T>&,       \
                                                                const CoeffAttentionSaved&, const DeviceTensor<uint8_t>*);
COEFFNET_INSTANTIATE_ATTENTION(float)
COEFFNET_INSTANTIATE_ATTENTION(bfloat16_t)
COEFFNET_INSTANTIATE_ATTENTION(half_t)
#undef COEFFNET_INSTANTIATE_ATTENTION

}  // namespace coeffnet::cuda
