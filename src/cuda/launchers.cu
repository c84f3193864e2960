// src/cuda/launchers.cu: host launchers of the hand-written kernels in kernels/*.cuh
// (declared in include/coeffnet/cuda/launchers.hpp), and the pure host planning functions
// (row_launch, plan_copy) that the tests run without a GPU.
//
// Instantiations are listed at the end: float and bfloat16_t for everything, half_t for the
// cheap elementwise / copy / optimiser launchers; the rest of the half_t matrix only with
// -DCOEFFNET_CUDA_FULL_MATRIX (keeps the CI compile short).
#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <type_traits>

#include "coeffnet/core/error.hpp"
#include "coeffnet/core/shape.hpp"
#include "coeffnet/cuda/check.hpp"
#include "coeffnet/cuda/launchers.hpp"
#include "coeffnet/cuda/runtime.hpp"
#include "coeffnet/cuda/tensor.hpp"
#include "kernels/activations.cuh"
#include "kernels/launch.cuh"
#include "kernels/adamw.cuh"
#include "kernels/common.cuh"
#include "kernels/copy.cuh"
#include "kernels/cross_entropy.cuh"
#include "kernels/layernorm.cuh"
#include "kernels/mix.cuh"
#include "kernels/softmax.cuh"

namespace coeffnet::cuda {

// ---- pure host planning ---------------------------------------------------------------------

const char* row_kind_name(RowLaunch::Kind k) {
    switch (k) {
        case RowLaunch::warp_per_row: return "warp_per_row";
        case RowLaunch::block_per_row: return "block_per_row";
        case RowLaunch::block_streaming: return "block_streaming";
    }
    return "unknown";
}

namespace {
std::atomic<int64_t> g_grid_cap_for_testing{0};  // set_max_grid_for_testing; 0: none
// min(limit, the test cap)
int64_t capped(int64_t limit) {
    const int64_t cap = g_grid_cap_for_testing.load(std::memory_order_relaxed);
    return cap > 0 ? std::min(limit, cap) : limit;
}
constexpr int64_t max_row_grid_default = int64_t{1} << 20;  // rows beyond this are walked grid-stride
int64_t max_row_grid() { return capped(max_row_grid_default); }
int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }
}  // namespace

void set_max_grid_for_testing(int64_t blocks) { g_grid_cap_for_testing.store(blocks > 0 ? blocks : 0); }
int64_t max_grid_for_testing() { return g_grid_cap_for_testing.load(); }

RowLaunch row_launch(int64_t rows, int64_t cols, int elem_bytes, bool aligned16) {
    check(rows >= 0 && cols >= 0, "cuda::row_launch: negative rows ", rows, " or cols ", cols);
    check(elem_bytes == 2 || elem_bytes == 4, "cuda::row_launch: element size ", elem_bytes, " is not 2 or 4 bytes");
    RowLaunch L;
    const int full = 16 / elem_bytes;
    static_assert(row_block_elems_per_thread == kern::row_block_elems, "launchers.hpp and common.cuh disagree");
    L.vec = aligned16 && cols > 0 && cols % full == 0 ? full : 1;
    const int64_t nvec = cols / L.vec;
    if (cols <= row_warp_max_cols) {
        L.kind = RowLaunch::warp_per_row;
        L.threads = 32;
        L.rows_per_block = 4;
        L.grid = std::clamp<int64_t>(ceil_div(rows, L.rows_per_block), 1, max_row_grid());
    } else if (cols <= row_block_max_threads * int64_t{row_block_elems_per_thread}) {
        L.kind = RowLaunch::block_per_row;
        const int64_t maxv = row_block_elems_per_thread / L.vec;
        int64_t threads = std::min<int64_t>(row_block_max_threads, std::max<int64_t>(128, round_up(ceil_div(nvec, 4), 32)));
        if (threads * maxv < nvec) threads = round_up(ceil_div(nvec, maxv), 32);
        L.threads = static_cast<int>(threads);
        L.grid = std::clamp<int64_t>(rows, 1, max_row_grid());
    } else {
        L.kind = RowLaunch::block_streaming;
        L.threads = 512;
        L.grid = std::clamp<int64_t>(rows, 1, max_row_grid());
    }
    return L;
}

CopyPlan plan_copy(const Shape& shape, const Shape& src_strides, const Shape& dst_strides) {
    check(shape.size() == src_strides.size() && shape.size() == dst_strides.size(), "cuda::plan_copy: shape ",
          shape_str(shape), " has ", src_strides.size(), " source and ", dst_strides.size(), " destination strides");
    CopyPlan p;
    p.numel = 1;
    for (int64_t d : shape) {
        check(d >= 0, "cuda::plan_copy: negative dimension in ", shape_str(shape));
        p.numel *= d;
    }
    if (p.numel == 0) return p;
    // Innermost first: (size, src stride, dst stride), size-1 dims dropped, mergeable dims merged.
    std::vector<std::array<int64_t, 3>> dims;
    for (size_t k = shape.size(); k-- > 0;) {
        if (shape[k] == 1) continue;
        if (!dims.empty()) {
            auto& in = dims.back();
            if (src_strides[k] == in[1] * in[0] && dst_strides[k] == in[2] * in[0]) {
                in[0] *= shape[k];
                continue;
            }
        }
        dims.push_back({shape[k], src_strides[k], dst_strides[k]});
    }
    if (dims.empty()) dims.push_back({1, 1, 1});
    check(dims.size() <= 6, "cuda::plan_copy: ", shape_str(shape), " needs ", dims.size(),
          " dimensions after merging; the copy kernel supports 6");
    p.rank = static_cast<int>(dims.size());
    for (int k = 0; k < p.rank; ++k) {
        const auto& d = dims[static_cast<size_t>(p.rank - 1 - k)];
        p.shape[k] = d[0];
        p.src_stride[k] = d[1];
        p.dst_stride[k] = d[2];
    }
    return p;
}

namespace {

using kern::device_t;

template <class T>
device_t<T>* dev(const DeviceTensor<T>& t) {  // works whether data() is const or not
    return reinterpret_cast<device_t<T>*>(const_cast<DeviceTensor<T>&>(t).data());
}
template <class T>
device_t<T>* dev_or_null(const DeviceTensor<T>* t) {
    return t ? dev(*t) : nullptr;
}

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }
bool aligned16(std::initializer_list<const void*> ps) {
    for (const void* p : ps)
        if (p && !aligned16(p)) return false;
    return true;
}

cudaStream_t stream() { return Context::get().stream(); }

unsigned flat_grid(int64_t nthreads_needed, int threads = 256) {
    return static_cast<unsigned>(std::clamp<int64_t>(ceil_div(nthreads_needed, threads), 1, capped(65535 * 16)));
}

void same_shape(const char* op, const char* an, const Shape& a, const char* bn, const Shape& b) {
    check(a == b, op, ": ", an, " ", shape_str(a), " and ", bn, " ", shape_str(b), " must have the same shape");
}

struct Rows {
    int64_t rows, cols;
};
Rows rows_of(const char* op, const Shape& s) {
    check(!s.empty(), op, ": expects rank >= 1, got a scalar");
    const int64_t cols = s.back();
    int64_t n = 1;
    for (int64_t d : s) n *= d;
    return {cols == 0 ? 0 : n / cols, cols};
}

template <int FULL, class F>
void with_vec(int vec, F&& f) {
    if (vec == 1) f(std::integral_constant<int, 1>{});
    else f(std::integral_constant<int, FULL>{});
}

// Runs f(vec, per_warp) for the row kernels.
template <int FULL, class F>
void row_dispatch(const RowLaunch& L, F&& f) {
    with_vec<FULL>(L.vec, [&](auto v) {
        if (L.kind == RowLaunch::warp_per_row) f(v, std::true_type{});
        else f(v, std::false_type{});
    });
}

dim3 row_block(const RowLaunch& L) {
    return L.kind == RowLaunch::warp_per_row ? dim3(32, static_cast<unsigned>(L.rows_per_block)) : dim3(static_cast<unsigned>(L.threads));
}

// Column sums of g (and of g * xhat): d_g[c] = sum_r g[r, c], d_gx[c] = sum_r g * (x - mean[r]) * rstd[r].
template <class DT>
void column_sums(const DT* g, const DT* x, const float* mean, const float* rstd, DT* d_g, DT* d_gx, int64_t rows,
                 int64_t cols) {
    if (cols == 0 || (!d_g && !d_gx)) return;
    const int64_t col_blocks = ceil_div(cols, 32);
    int64_t chunks = rows == 0 ? 0 : std::clamp<int64_t>(ceil_div(2048, col_blocks), 1, std::min<int64_t>(65535, ceil_div(rows, 8)));
    const int64_t per_chunk = chunks == 0 ? 0 : ceil_div(rows, chunks);
    if (chunks) chunks = ceil_div(rows, per_chunk);
    const bool with_x = d_gx != nullptr;
    DeviceTensor<float> pg = DeviceTensor<float>::empty({std::max<int64_t>(chunks, 1), cols});
    DeviceTensor<float> px = DeviceTensor<float>::empty({with_x ? std::max<int64_t>(chunks, 1) : 1, with_x ? cols : 1});
    cudaStream_t s = stream();
    if (chunks > 0) {
        const dim3 grid(static_cast<unsigned>(col_blocks), static_cast<unsigned>(chunks)), block(32, 8);
        if (with_x)
            launch<kern::colsum_partial<DT, true>>(grid, block, 0, s)(g, x, mean, rstd, pg.data(), px.data(), rows, cols, per_chunk);
        else
            launch<kern::colsum_partial<DT, false>>(grid, block, 0, s)(g, x, mean, rstd, pg.data(), nullptr, rows, cols, per_chunk);
        COEFFNET_LAUNCH_CHECK("colsum_partial");
    }
    if (d_g) {
        launch<kern::colsum_final<DT>>(flat_grid(cols), 256, 0, s)(pg.data(), chunks, cols, d_g);
        COEFFNET_LAUNCH_CHECK("colsum_final");
    }
    if (d_gx) {
        launch<kern::colsum_final<DT>>(flat_grid(cols), 256, 0, s)(px.data(), chunks, cols, d_gx);
        COEFFNET_LAUNCH_CHECK("colsum_final");
    }
}

// Broadcast view of an fp32 additive mask over x's shape.
kern::MaskView mask_view(const char* op, const DeviceTensor<float>* mask, const Shape& xs) {
    kern::MaskView m;
    if (!mask) return m;
    const Shape& ms = mask->shape();
    check(ms.size() <= xs.size(), op, ": mask ", shape_str(ms), " does not broadcast to the input ", shape_str(xs));
    check(xs.size() - 1 <= kern::MaskView::max_lead, op, ": a mask needs rank <= 7 input, got ", shape_str(xs));
    Shape bstr(xs.size(), 0);
    int64_t acc = 1;
    const size_t off = xs.size() - ms.size();
    for (size_t k = ms.size(); k-- > 0;) {
        const int64_t md = ms[k], xd = xs[off + k];
        check(md == xd || md == 1, op, ": mask ", shape_str(ms), " does not broadcast to the input ", shape_str(xs));
        bstr[off + k] = md == 1 ? 0 : acc;
        acc *= md;
    }
    m.ptr = mask->data();
    m.lead_rank = static_cast<int>(xs.size()) - 1;
    for (int k = 0; k < m.lead_rank; ++k) {
        m.lead_size[k] = std::max<int64_t>(xs[static_cast<size_t>(k)], 1);
        m.lead_stride[k] = bstr[static_cast<size_t>(k)];
    }
    m.col_stride = bstr.back();
    return m;
}

template <class T>
void run_copy(const char* op, const device_t<T>* src, device_t<T>* dst, const Shape& shape, const Shape& ss,
              const Shape& ds) {
    using DT = device_t<T>;
    const CopyPlan p = plan_copy(shape, ss, ds);
    if (p.numel == 0) return;
    constexpr int FULL = kern::vec16<DT>;
    const int r = p.rank - 1;
    bool vec_ok = p.src_stride[r] == 1 && p.dst_stride[r] == 1 && p.shape[r] % FULL == 0 && aligned16({src, dst});
    for (int k = 0; k < r; ++k) vec_ok = vec_ok && p.src_stride[k] % FULL == 0 && p.dst_stride[k] % FULL == 0;
    kern::CopyDims d{};
    d.rank = p.rank;
    for (int k = 0; k < p.rank; ++k) {
        d.shape[k] = p.shape[k];
        d.src_stride[k] = p.src_stride[k];
        d.dst_stride[k] = p.dst_stride[k];
    }
    with_vec<FULL>(vec_ok ? FULL : 1, [&](auto v) {
        constexpr int VEC = decltype(v)::value;
        d.shape[r] = p.shape[r] / VEC;
        const int64_t nvec = p.numel / VEC;
        launch<kern::strided_copy<DT, VEC>>(flat_grid(nvec), 256, 0, stream())(src, dst, nvec, d);
    });
    COEFFNET_LAUNCH_CHECK(op);
}

}  // namespace

// ---- alpha' ---------------------------------------------------------------------------------

void alpha_prime(const DeviceTensor<float>& alpha, DeviceTensor<float>& out, const DropoutDraw<float>& d, bool residual) {
    require("cuda::alpha_prime");
    const Shape& s = alpha.shape();
    check(s.size() == 2 && s[0] == s[1], "cuda::alpha_prime: alpha must be square [heads, heads], got ", shape_str(s));
    same_shape("cuda::alpha_prime", "alpha", s, "alpha_prime", out.shape());
    if (s[0] == 0) return;
    launch<kern::alpha_prime_fwd>(flat_grid(s[0] * s[0]), 256, 0, stream())(alpha.data(), out.data(), s[0], d, residual);
    COEFFNET_LAUNCH_CHECK("alpha_prime_fwd");
}

void alpha_prime_backward(const DeviceTensor<float>& g, DeviceTensor<float>& d_alpha, const DropoutDraw<float>& d) {
    require("cuda::alpha_prime_backward");
    const Shape& s = g.shape();
    check(s.size() == 2 && s[0] == s[1], "cuda::alpha_prime_backward: gradient must be square, got ", shape_str(s));
    same_shape("cuda::alpha_prime_backward", "d_alpha_prime", s, "d_alpha", d_alpha.shape());
    if (s[0] == 0) return;
    launch<kern::alpha_prime_bwd>(flat_grid(s[0] * s[0]), 256, 0, stream())(g.data(), d_alpha.data(), s[0], d);
    COEFFNET_LAUNCH_CHECK("alpha_prime_bwd");
}

// ---- mixing -----------------------------------------------------------------------------------

namespace {
struct MixDims {
    int64_t B, NM;
    int H;
};
MixDims mix_dims(const char* op, const Shape& maps, const Shape& ap) {
    check(maps.size() == 4, op, ": maps must be [batch, heads, queries, keys], got ", shape_str(maps));
    const int64_t H = maps[1];
    check(ap == Shape{H, H}, op, ": coefficients ", shape_str(ap), " must be [heads, heads] = [", H, ", ", H, "] for maps ",
          shape_str(maps));
    check(H <= 64, op, ": at most 64 heads are supported, got ", H);
    return {maps[0], maps[2] * maps[3], static_cast<int>(H)};
}

template <class DT>
void launch_mix(const DT* in, const float* ap, DT* out, const MixDims& m, bool transpose) {
    if (m.B * m.NM == 0 || m.H == 0) return;
    cudaStream_t s = stream();
    if (m.H <= 16 && m.NM % 4 == 0 && aligned16({in, out}) && (sizeof(DT) == 4 || (reinterpret_cast<uintptr_t>(in) % 8 == 0))) {
        launch<kern::mix_fwd<DT, 16, 4>>(flat_grid(m.B * m.NM / 4), 256, 0, s)(in, ap, out, m.B, m.H, m.NM, transpose);
    } else if (m.H <= 16) {
        launch<kern::mix_fwd<DT, 16, 1>>(flat_grid(m.B * m.NM), 256, 0, s)(in, ap, out, m.B, m.H, m.NM, transpose);
    } else {
        launch<kern::mix_fwd<DT, 64, 1>>(flat_grid(m.B * m.NM), 256, 0, s)(in, ap, out, m.B, m.H, m.NM, transpose);
    }
    COEFFNET_LAUNCH_CHECK("mix_fwd");
}
}  // namespace

template <class T>
void mix_heads(const DeviceTensor<T>& maps, const DeviceTensor<float>& ap, DeviceTensor<T>& mixed) {
    require("cuda::mix_heads");
    const MixDims m = mix_dims("cuda::mix_heads", maps.shape(), ap.shape());
    same_shape("cuda::mix_heads", "maps", maps.shape(), "mixed", mixed.shape());
    launch_mix(dev(maps), ap.data(), dev(mixed), m, false);
}

template <class T>
void mix_heads_backward(const DeviceTensor<T>& d_mixed, const DeviceTensor<T>& maps, const DeviceTensor<float>& ap,
                        DeviceTensor<T>* d_maps, DeviceTensor<float>* d_ap) {
    using DT = device_t<T>;
    require("cuda::mix_heads_backward");
    const char* op = "cuda::mix_heads_backward";
    const MixDims m = mix_dims(op, maps.shape(), ap.shape());
    same_shape(op, "maps", maps.shape(), "d_mixed", d_mixed.shape());
    if (d_maps) same_shape(op, "maps", maps.shape(), "d_maps", d_maps->shape());
    if (d_ap) same_shape(op, "alpha_prime", ap.shape(), "d_alpha_prime", d_ap->shape());
    if (!d_maps && !d_ap) return;
    if (m.H == 0) return;
    cudaStream_t s = stream();
    const int64_t HH = int64_t{m.H} * m.H;
    auto run = [&](auto maxh) {
        constexpr int MAXH = decltype(maxh)::value;
        const int64_t tiles = m.B * ceil_div(m.NM, kern::MixBwdTile<MAXH>::tile);
        const int64_t grid = std::min<int64_t>(tiles, capped(1024));
        DeviceTensor<float> part = DeviceTensor<float>::empty({std::max<int64_t>(grid, 1), d_ap ? HH : 1});
        if (grid > 0) {
            launch<kern::mix_bwd<DT, MAXH>>(static_cast<unsigned>(grid), 256, 0, s)(
                dev(d_mixed), dev(maps), ap.data(), d_maps ? dev(*d_maps) : nullptr, d_ap ? part.data() : nullptr, m.B,
                m.H, m.NM);
            COEFFNET_LAUNCH_CHECK("mix_bwd");
        }
        if (d_ap) {
            launch<kern::mix_reduce>(flat_grid(HH), 256, 0, s)(part.data(), grid, HH, d_ap->data());
            COEFFNET_LAUNCH_CHECK("mix_reduce");
        }
    };
    if (m.H <= 16) run(std::integral_constant<int, 16>{});
    else run(std::integral_constant<int, 64>{});
}

// ---- softmax ------------------------------------------------------------------------------------

template <class T>
void softmax_forward(const DeviceTensor<T>& x, DeviceTensor<T>& y, float scale, const DeviceTensor<float>* mask) {
    using DT = device_t<T>;
    require("cuda::softmax_forward");
    const char* op = "cuda::softmax_forward";
    same_shape(op, "x", x.shape(), "y", y.shape());
    const Rows r = rows_of(op, x.shape());
    const kern::MaskView mv = mask_view(op, mask, x.shape());
    if (r.rows == 0) return;
    const RowLaunch L = row_launch(r.rows, r.cols, sizeof(DT), aligned16({dev(x), dev(y)}));
    row_dispatch<kern::vec16<DT>>(L, [&](auto v, auto pw) {
        constexpr int VEC = decltype(v)::value;
        constexpr bool PW = decltype(pw)::value;
        if constexpr (!PW) {
            if (L.kind == RowLaunch::block_streaming) {
                launch<kern::softmax_fwd_stream<DT, VEC>>(static_cast<unsigned>(L.grid), L.threads, 0, stream())(
                    dev(x), dev(y), r.rows, r.cols, scale, mv);
                return;
            }
        }
        launch<kern::softmax_fwd_cached<DT, VEC, PW>>(static_cast<unsigned>(L.grid), row_block(L), 0, stream())(
            dev(x), dev(y), r.rows, static_cast<int>(r.cols), scale, mv);
    });
    COEFFNET_LAUNCH_CHECK("softmax_fwd");
}

template <class T>
void softmax_backward(const DeviceTensor<T>& y, const DeviceTensor<T>& dy, DeviceTensor<T>& dx, float scale) {
    using DT = device_t<T>;
    require("cuda::softmax_backward");
    const char* op = "cuda::softmax_backward";
    same_shape(op, "y", y.shape(), "dy", dy.shape());
    same_shape(op, "y", y.shape(), "dx", dx.shape());
    const Rows r = rows_of(op, y.shape());
    if (r.rows == 0) return;
    const RowLaunch L = row_launch(r.rows, r.cols, sizeof(DT), aligned16({dev(y), dev(dy), dev(dx)}));
    row_dispatch<kern::vec16<DT>>(L, [&](auto v, auto pw) {
        constexpr int VEC = decltype(v)::value;
        constexpr bool PW = decltype(pw)::value;
        if constexpr (!PW) {
            if (L.kind == RowLaunch::block_streaming) {
                launch<kern::softmax_bwd_stream<DT, VEC>>(static_cast<unsigned>(L.grid), L.threads, 0, stream())(
                    dev(y), dev(dy), dev(dx), r.rows, r.cols, scale);
                return;
            }
        }
        launch<kern::softmax_bwd_cached<DT, VEC, PW>>(static_cast<unsigned>(L.grid), row_block(L), 0, stream())(
            dev(y), dev(dy), dev(dx), r.rows, static_cast<int>(r.cols), scale);
    });
    COEFFNET_LAUNCH_CHECK("softmax_bwd");
}

// ---- layer norm ---------------------------------------------------------------------------------

template <class T>
void layernorm_forward(const DeviceTensor<T>& x, const DeviceTensor<T>* weight, const DeviceTensor<T>* bias, float eps,
                       DeviceTensor<T>& y, DeviceTensor<float>& mean, DeviceTensor<float>& rstd) {
    using DT = device_t<T>;
    require("cuda::layernorm_forward");
    const char* op = "cuda::layernorm_forward";
    same_shape(op, "x", x.shape(), "y", y.shape());
    const Rows r = rows_of(op, x.shape());
    if (weight) same_shape(op, "weight", weight->shape(), "[C]", Shape{r.cols});
    if (bias) same_shape(op, "bias", bias->shape(), "[C]", Shape{r.cols});
    same_shape(op, "mean", mean.shape(), "[rows]", Shape{r.rows});
    same_shape(op, "rstd", rstd.shape(), "[rows]", Shape{r.rows});
    check(eps >= 0.f && std::isfinite(eps), op, ": eps must be finite and >= 0, got ", eps);
    if (r.rows == 0) return;
    const DT *w = dev_or_null(weight), *b = dev_or_null(bias);
    const RowLaunch L = row_launch(r.rows, r.cols, sizeof(DT), aligned16({dev(x), dev(y), w, b}));
    row_dispatch<kern::vec16<DT>>(L, [&](auto v, auto pw) {
        constexpr int VEC = decltype(v)::value;
        constexpr bool PW = decltype(pw)::value;
        if constexpr (!PW) {
            if (L.kind == RowLaunch::block_streaming) {
                launch<kern::layernorm_fwd_stream<DT, VEC>>(static_cast<unsigned>(L.grid), L.threads, 0, stream())(
                    dev(x), w, b, dev(y), mean.data(), rstd.data(), r.rows, r.cols, eps);
                return;
            }
        }
        launch<kern::layernorm_fwd_cached<DT, VEC, PW>>(static_cast<unsigned>(L.grid), row_block(L), 0, stream())(
            dev(x), w, b, dev(y), mean.data(), rstd.data(), r.rows, static_cast<int>(r.cols), eps);
    });
    COEFFNET_LAUNCH_CHECK("layernorm_fwd");
}

template <class T>
void layernorm_backward(const DeviceTensor<T>& dy, const DeviceTensor<T>& x, const DeviceTensor<T>* weight,
                        const DeviceTensor<float>& mean, const DeviceTensor<float>& rstd, DeviceTensor<T>* dx,
                        DeviceTensor<T>* d_weight, DeviceTensor<T>* d_bias) {
    using DT = device_t<T>;
    require("cuda::layernorm_backward");
    const char* op = "cuda::layernorm_backward";
    same_shape(op, "dy", dy.shape(), "x", x.shape());
    const Rows r = rows_of(op, x.shape());
    if (weight) same_shape(op, "weight", weight->shape(), "[C]", Shape{r.cols});
    same_shape(op, "mean", mean.shape(), "[rows]", Shape{r.rows});
    same_shape(op, "rstd", rstd.shape(), "[rows]", Shape{r.rows});
    if (dx) same_shape(op, "x", x.shape(), "dx", dx->shape());
    if (d_weight) same_shape(op, "d_weight", d_weight->shape(), "[C]", Shape{r.cols});
    if (d_bias) same_shape(op, "d_bias", d_bias->shape(), "[C]", Shape{r.cols});
    const DT* w = dev_or_null(weight);
    if (dx && r.rows > 0) {
        const RowLaunch L = row_launch(r.rows, r.cols, sizeof(DT), aligned16({dev(dy), dev(x), dev(*dx), w}));
        row_dispatch<kern::vec16<DT>>(L, [&](auto v, auto pw) {
            constexpr int VEC = decltype(v)::value;
            constexpr bool PW = decltype(pw)::value;
            if constexpr (!PW) {
                if (L.kind == RowLaunch::block_streaming) {
                    launch<kern::layernorm_bwd_stream<DT, VEC>>(static_cast<unsigned>(L.grid), L.threads, 0, stream())(
                        dev(dy), dev(x), w, mean.data(), rstd.data(), dev(*dx), r.rows, r.cols);
                    return;
                }
            }
            launch<kern::layernorm_bwd_cached<DT, VEC, PW>>(static_cast<unsigned>(L.grid), row_block(L), 0, stream())(
                dev(dy), dev(x), w, mean.data(), rstd.data(), dev(*dx), r.rows, static_cast<int>(r.cols));
        });
        COEFFNET_LAUNCH_CHECK("layernorm_bwd");
    }
    column_sums<DT>(dev(dy), dev(x), mean.data(), rstd.data(), dev_or_null(d_bias), dev_or_null(d_weight), r.rows, r.cols);
}

// ---- activations, bias, residual --------------------------------------------------------------------

namespace {
int act_kind(Activation a) {
    switch (a) {
        case Activation::gelu_erf: return kern::act_gelu_erf;
        case Activation::gelu_tanh: return kern::act_gelu_tanh;
        case Activation::silu: return kern::act_silu;
        case Activation::identity: return kern::act_identity;
    }
    fail("cuda::activation: unknown activation ", static_cast<int>(a));
}
}  // namespace

template <class T>
void activation_forward(Activation a, const DeviceTensor<T>& x, const DeviceTensor<T>* bias, DeviceTensor<T>& y) {
    using DT = device_t<T>;
    require("cuda::activation_forward");
    const char* op = "cuda::activation_forward";
    same_shape(op, "x", x.shape(), "y", y.shape());
    const Rows r = rows_of(op, x.shape());
    if (bias) same_shape(op, "bias", bias->shape(), "[C]", Shape{r.cols});
    const int64_t n = r.rows * r.cols;
    if (n == 0) return;
    constexpr int FULL = kern::vec16<DT>;
    const DT* b = dev_or_null(bias);
    const bool vec_ok = n % FULL == 0 && r.cols % FULL == 0 && aligned16({dev(x), dev(y), b});
    const int kind = act_kind(a);
    with_vec<FULL>(vec_ok ? FULL : 1, [&](auto v) {
        constexpr int VEC = decltype(v)::value;
        launch<kern::activation_fwd<DT, VEC>>(flat_grid(n / VEC), 256, 0, stream())(kind, dev(x), b, dev(y), n, r.cols);
    });
    COEFFNET_LAUNCH_CHECK("activation_fwd");
}

template <class T>
void activation_backward(Activation a, const DeviceTensor<T>& x, const DeviceTensor<T>* bias, const DeviceTensor<T>& dy,
                         DeviceTensor<T>& dx) {
    using DT = device_t<T>;
    require("cuda::activation_backward");
    const char* op = "cuda::activation_backward";
    same_shape(op, "x", x.shape(), "dy", dy.shape());
    same_shape(op, "x", x.shape(), "dx", dx.shape());
    const Rows r = rows_of(op, x.shape());
    if (bias) same_shape(op, "bias", bias->shape(), "[C]", Shape{r.cols});
    const int64_t n = r.rows * r.cols;
    if (n == 0) return;
    constexpr int FULL = kern::vec16<DT>;
    const DT* b = dev_or_null(bias);
    const bool vec_ok = n % FULL == 0 && r.cols % FULL == 0 && aligned16({dev(x), dev(dy), dev(dx), b});
    const int kind = act_kind(a);
    with_vec<FULL>(vec_ok ? FULL : 1, [&](auto v) {
        constexpr int VEC = decltype(v)::value;
        launch<kern::activation_bwd<DT, VEC>>(flat_grid(n / VEC), 256, 0, stream())(kind, dev(x), b, dev(dy), dev(dx), n, r.cols);
    });
    COEFFNET_LAUNCH_CHECK("activation_bwd");
}

template <class T>
void bias_add(const DeviceTensor<T>& x, const DeviceTensor<T>& bias, DeviceTensor<T>& y) {
    activation_forward(Activation::identity, x, &bias, y);
}

template <class T>
void bias_add_backward(const DeviceTensor<T>& dy, DeviceTensor<T>& d_bias) {
    using DT = device_t<T>;
    require("cuda::bias_add_backward");
    const Rows r = rows_of("cuda::bias_add_backward", dy.shape());
    same_shape("cuda::bias_add_backward", "d_bias", d_bias.shape(), "[C]", Shape{r.cols});
    column_sums<DT>(dev(dy), nullptr, nullptr, nullptr, dev(d_bias), nullptr, r.rows, r.cols);
}

template <class T>
void residual_add(const DeviceTensor<T>& a, const DeviceTensor<T>& b, DeviceTensor<T>& y) {
    using DT = device_t<T>;
    require("cuda::residual_add");
    same_shape("cuda::residual_add", "a", a.shape(), "b", b.shape());
    same_shape("cuda::residual_add", "a", a.shape(), "y", y.shape());
    const int64_t n = a.numel();
    if (n == 0) return;
    constexpr int FULL = kern::vec16<DT>;
    const bool vec_ok = n % FULL == 0 && aligned16({dev(a), dev(b), dev(y)});
    with_vec<FULL>(vec_ok ? FULL : 1, [&](auto v) {
        constexpr int VEC = decltype(v)::value;
        launch<kern::residual_add_kernel<DT, VEC>>(flat_grid(n / VEC), 256, 0, stream())(dev(a), dev(b), dev(y), n);
    });
    COEFFNET_LAUNCH_CHECK("residual_add");
}

// ---- sums over the last axis ------------------------------------------------------------------------

template <class T>
void sum_last(const DeviceTensor<T>& x, DeviceTensor<T>& y, bool mean) {
    using DT = device_t<T>;
    require("cuda::sum_last");
    const char* op = "cuda::sum_last";
    const Rows r = rows_of(op, x.shape());
    const Shape lead(x.shape().begin(), x.shape().end() - 1);
    same_shape(op, "y", y.shape(), "x without its last axis", lead);
    check(!mean || r.cols > 0, op, ": mean over an empty axis of ", shape_str(x.shape()));
    int64_t nrows = 1;
    for (int64_t d : lead) nrows *= d;
    if (nrows == 0) return;
    if (r.cols == 0) {  // sum over nothing: zeros
        COEFFNET_CUDA_CHECK(cudaMemsetAsync(y.data(), 0, y.bytes(), stream()));
        return;
    }
    const float factor = mean ? static_cast<float>(1.0 / static_cast<double>(r.cols)) : 1.f;
    RowLaunch L = row_launch(r.rows, r.cols, sizeof(DT), aligned16(dev(x)));
    if (L.kind != RowLaunch::warp_per_row) L.threads = 512;
    row_dispatch<kern::vec16<DT>>(L, [&](auto v, auto pw) {
        constexpr int VEC = decltype(v)::value;
        constexpr bool PW = decltype(pw)::value;
        launch<kern::sum_rows<DT, VEC, PW>>(static_cast<unsigned>(L.grid), row_block(L), 0, stream())(dev(x), dev(y), r.rows,
                                                                                                   r.cols, factor);
    });
    COEFFNET_LAUNCH_CHECK("sum_rows");
}

template <class T>
void sum_last_backward(const DeviceTensor<T>& dy, DeviceTensor<T>& dx, bool mean) {
    using DT = device_t<T>;
    require("cuda::sum_last_backward");
    const char* op = "cuda::sum_last_backward";
    const Rows r = rows_of(op, dx.shape());
    const Shape lead(dx.shape().begin(), dx.shape().end() - 1);
    same_shape(op, "dy", dy.shape(), "dx without its last axis", lead);
    if (r.rows * r.cols == 0) return;
    const float factor = mean ? static_cast<float>(1.0 / static_cast<double>(r.cols)) : 1.f;
    launch<kern::sum_bwd<DT>>(flat_grid(r.rows * r.cols), 256, 0, stream())(dev(dy), dev(dx), r.rows, r.cols, factor);
    COEFFNET_LAUNCH_CHECK("sum_bwd");
}

// ---- cross-entropy ------------------------------------------------------------------------------------

template <class T>
void cross_entropy_forward(const DeviceTensor<T>& logits, const DeviceTensor<int64_t>& targets, int64_t ignore_index,
                           DeviceTensor<float>& loss, DeviceTensor<float>& lse) {
    using DT = device_t<T>;
    require("cuda::cross_entropy_forward");
    const char* op = "cuda::cross_entropy_forward";
    const Rows r = rows_of(op, logits.shape());
    const Shape lead(logits.shape().begin(), logits.shape().end() - 1);
    same_shape(op, "targets", targets.shape(), "logits without the class axis", lead);
    same_shape(op, "loss", loss.shape(), "[2]", Shape{2});
    same_shape(op, "lse", lse.shape(), "[rows]", Shape{targets.numel()});
    check(r.cols > 0, op, ": logits have no classes: ", shape_str(logits.shape()));
    const int64_t rows = targets.numel();
    DeviceTensor<float> row_loss = DeviceTensor<float>::empty({std::max<int64_t>(rows, 1)});
    DeviceTensor<float> row_valid = DeviceTensor<float>::empty({std::max<int64_t>(rows, 1)});
    cudaStream_t s = stream();
    if (rows > 0) {
        RowLaunch L = row_launch(rows, r.cols, sizeof(DT), aligned16(dev(logits)));
        if (L.kind != RowLaunch::warp_per_row) L.threads = 512;
        row_dispatch<kern::vec16<DT>>(L, [&](auto v, auto pw) {
            constexpr int VEC = decltype(v)::value;
            constexpr bool PW = decltype(pw)::value;
            launch<kern::ce_fwd_rows<DT, VEC, PW>>(static_cast<unsigned>(L.grid), row_block(L), 0, s)(
                dev(logits), targets.data(), ignore_index, lse.data(), row_loss.data(), row_valid.data(), rows, r.cols);
        });
        COEFFNET_LAUNCH_CHECK("ce_fwd_rows");
    }
    launch<kern::ce_reduce>(1, 1024, 0, s)(row_loss.data(), row_valid.data(), rows, loss.data());
    COEFFNET_LAUNCH_CHECK("ce_reduce");
}

template <class T>
void cross_entropy_backward(const DeviceTensor<T>& logits, const DeviceTensor<int64_t>& targets, int64_t ignore_index,
                            const DeviceTensor<float>& loss, const DeviceTensor<float>& lse, const DeviceTensor<float>* d_loss,
                            DeviceTensor<T>& d_logits) {
    using DT = device_t<T>;
    require("cuda::cross_entropy_backward");
    const char* op = "cuda::cross_entropy_backward";
    const Rows r = rows_of(op, logits.shape());
    const Shape lead(logits.shape().begin(), logits.shape().end() - 1);
    same_shape(op, "targets", targets.shape(), "logits without the class axis", lead);
    same_shape(op, "loss", loss.shape(), "[2]", Shape{2});
    same_shape(op, "lse", lse.shape(), "[rows]", Shape{targets.numel()});
    same_shape(op, "logits", logits.shape(), "d_logits", d_logits.shape());
    if (d_loss) check(d_loss->numel() == 1, op, ": d_loss must hold one value, got ", shape_str(d_loss->shape()));
    const int64_t rows = targets.numel();
    if (rows == 0 || r.cols == 0) return;
    RowLaunch L = row_launch(rows, r.cols, sizeof(DT), aligned16({dev(logits), dev(d_logits)}));
    if (L.kind != RowLaunch::warp_per_row) L.threads = 512;
    row_dispatch<kern::vec16<DT>>(L, [&](auto v, auto pw) {
        constexpr int VEC = decltype(v)::value;
        constexpr bool PW = decltype(pw)::value;
        launch<kern::ce_bwd<DT, VEC, PW>>(static_cast<unsigned>(L.grid), row_block(L), 0, stream())(
            dev(logits), targets.data(), ignore_index, lse.data(), loss.data(), d_loss ? d_loss->data() : nullptr,
            dev(d_logits), rows, r.cols);
    });
    COEFFNET_LAUNCH_CHECK("ce_bwd");
}

// ---- AdamW ----------------------------------------------------------------------------------------------

template <class T>
void adamw_step(DeviceTensor<float>& master, const DeviceTensor<T>& grad, DeviceTensor<float>& m, DeviceTensor<float>& v,
                const AdamWParams& p, DeviceTensor<T>* param) {
    using DT = device_t<T>;
    require("cuda::adamw_step");
    const char* op = "cuda::adamw_step";
    same_shape(op, "master", master.shape(), "grad", grad.shape());
    same_shape(op, "master", master.shape(), "exp_avg", m.shape());
    same_shape(op, "master", master.shape(), "exp_avg_sq", v.shape());
    if (param) same_shape(op, "master", master.shape(), "param", param->shape());
    check(p.beta1 >= 0 && p.beta1 < 1 && p.beta2 >= 0 && p.beta2 < 1, op, ": betas must be in [0, 1), got (", p.beta1,
          ", ", p.beta2, ")");
    check(p.step >= 1, op, ": step must be >= 1, got ", p.step);
    // The CPU's constants (train/optim.hpp), computed in double and rounded to float.
    const double bc1 = 1.0 - std::pow(p.beta1, static_cast<double>(p.step));
    const double bc2 = 1.0 - std::pow(p.beta2, static_cast<double>(p.step));
    kern::AdamWConsts c{};
    c.decay = static_cast<float>(1.0 - p.lr * p.weight_decay);
    c.b1 = static_cast<float>(p.beta1);
    c.b2 = static_cast<float>(p.beta2);
    c.one_minus_b1 = 1.f - c.b1;
    c.one_minus_b2 = 1.f - c.b2;
    c.step_size = static_cast<float>(p.lr / bc1);
    c.bc2_sqrt = static_cast<float>(std::sqrt(bc2));
    c.eps = static_cast<float>(p.eps);
    const int64_t n = master.numel();
    if (n == 0) return;
    DT* copy = dev_or_null(param);
    const bool vec_ok = n % 4 == 0 && aligned16({master.data(), dev(grad), m.data(), v.data(), copy}) &&
                        (sizeof(DT) == 4 || (reinterpret_cast<uintptr_t>(dev(grad)) % 8 == 0 &&
                                             (!copy || reinterpret_cast<uintptr_t>(copy) % 8 == 0)));
    with_vec<4>(vec_ok ? 4 : 1, [&](auto vv) {
        constexpr int VEC = decltype(vv)::value;
        launch<kern::adamw_kernel<DT, VEC>>(flat_grid(n / VEC), 256, 0, stream())(master.data(), dev(grad), m.data(), v.data(),
                                                                             copy, n, c);
    });
    COEFFNET_LAUNCH_CHECK("adamw");
}

// ---- copies ------------------------------------------------------------------------------------------------

template <class T>
void permute(const DeviceTensor<T>& x, const std::vector<int64_t>& perm, DeviceTensor<T>& y) {
    require("cuda::permute");
    const Shape& xs = x.shape();
    check(perm.size() == xs.size(), "cuda::permute: permutation of ", perm.size(), " axes for ", shape_str(xs));
    std::vector<bool> seen(xs.size(), false);
    Shape ys(xs.size()), ss(xs.size());
    const Shape xst = contiguous_strides(xs);
    for (size_t k = 0; k < perm.size(); ++k) {
        const int64_t a = perm[k];
        check(a >= 0 && a < static_cast<int64_t>(xs.size()) && !seen[static_cast<size_t>(a)],
              "cuda::permute: invalid permutation for ", shape_str(xs));
        seen[static_cast<size_t>(a)] = true;
        ys[k] = xs[static_cast<size_t>(a)];
        ss[k] = xst[static_cast<size_t>(a)];
    }
    same_shape("cuda::permute", "y", y.shape(), "the permuted shape", ys);
    run_copy<T>("permute", dev(x), dev(y), ys, ss, contiguous_strides(ys));
}

template <class From, class To>
void convert(const DeviceTensor<From>& x, DeviceTensor<To>& y) {
    require("cuda::convert");
    same_shape("cuda::convert", "x", x.shape(), "y", y.shape());
    const int64_t n = x.numel();
    if (n == 0) return;
    launch<kern::convert_kernel<device_t<From>, device_t<To>>>(flat_grid(n), 256, 0, stream())(dev(x), dev(y), n);
    COEFFNET_LAUNCH_CHECK("convert");
}

namespace {
// Shape of `s` with axis a set to n.
Shape with_axis(Shape s, size_t a, int64_t n) {
    s[a] = n;
    return s;
}

// How the messages of join_axis name things: concat joins "tensor"s ("parts") into the "output";
// split fills "output"s ("outputs") from the "input".
struct JoinWords {
    const char* scalar;  // the refusal of a rank-0 whole
    const char* piece;
    const char* pieces;
    const char* whole;
};

// The axis (0 .. rank-1) along which `pieces` join into `whole`, after checking that the axis is
// in range, that every piece is there and has whole's shape but along the axis, and that the
// pieces add up to whole along it.
template <class P>
size_t join_axis(const char* op, const JoinWords& w, const Shape& whole, int64_t axis, const std::vector<P*>& pieces) {
    check(!whole.empty(), op, ": ", w.scalar);
    const int64_t rank = static_cast<int64_t>(whole.size());
    check(axis >= -rank && axis < rank, op, ": axis ", axis, " is out of range for rank ", rank);
    const size_t a = static_cast<size_t>(axis < 0 ? axis + rank : axis);
    int64_t total = 0;
    for (size_t i = 0; i < pieces.size(); ++i) {
        check(pieces[i] != nullptr, op, ": null ", w.piece, " in the list");
        const Shape& ps = pieces[i]->shape();
        check(ps.size() == whole.size() && with_axis(ps, a, 0) == with_axis(whole, a, 0), op, ": ", w.piece, " ", i,
              " has shape ", shape_str(ps), ", incompatible with the ", w.whole, " ", shape_str(whole), " along axis ", a);
        total += ps[a];
    }
    check(total == whole[a], op, ": ", w.pieces, " add up to ", total, " along axis ", a, " but the ", w.whole, " ",
          shape_str(whole), " has ", whole[a]);
    return a;
}
}  // namespace

template <class T>
void concat(const std::vector<const DeviceTensor<T>*>& parts, int64_t axis, DeviceTensor<T>& out) {
    require("cuda::concat");
    const char* op = "cuda::concat";
    check(!parts.empty(), op, ": no tensors given");
    const Shape& os = out.shape();
    const size_t a = join_axis(op, {"cannot concatenate scalars", "tensor", "parts", "output"}, os, axis, parts);
    const Shape ost = contiguous_strides(os);
    int64_t at = 0;
    for (const DeviceTensor<T>* p : parts) {
        run_copy<T>("concat", dev(*p), dev(out) + at * ost[a], p->shape(), contiguous_strides(p->shape()), ost);
        at += p->shape()[a];
    }
}

template <class T>
void split(const DeviceTensor<T>& x, int64_t axis, const std::vector<DeviceTensor<T>*>& outs) {
    require("cuda::split");
    const char* op = "cuda::split";
    const Shape& xs = x.shape();
    const size_t a = join_axis(op, {"cannot split a scalar", "output", "outputs", "input"}, xs, axis, outs);
    const Shape xst = contiguous_strides(xs);
    int64_t at = 0;
    for (DeviceTensor<T>* p : outs) {
        run_copy<T>("split", dev(x) + at * xst[a], dev(*p), p->shape(), xst, contiguous_strides(p->shape()));
        at += p->shape()[a];
    }
}

namespace {
struct PatchGeom {
    Shape shape6, pixel_strides, patch_strides;
    Shape patches;
};
PatchGeom patch_geom(const char* op, const Shape& px, int64_t ph, int64_t pw) {
    check(px.size() == 4, op, ": pixels must be [batch, channels, height, width], got ", shape_str(px));
    check(ph > 0 && pw > 0 && px[2] >= ph && px[3] >= pw, op, ": patch [", ph, ", ", pw, "] does not fit images ",
          shape_str(px));
    const int64_t B = px[0], C = px[1], H = px[2], W = px[3], hp = H / ph, wp = W / pw;
    PatchGeom g;
    g.shape6 = {B, hp, wp, C, ph, pw};
    g.pixel_strides = {C * H * W, ph * W, pw, H * W, W, 1};
    g.patch_strides = contiguous_strides(g.shape6);
    g.patches = {B, hp * wp, C * ph * pw};
    return g;
}
}  // namespace

template <class T>
void patchify(const DeviceTensor<T>& pixels, int64_t ph, int64_t pw, DeviceTensor<T>& patches) {
    require("cuda::patchify");
    const PatchGeom g = patch_geom("cuda::patchify", pixels.shape(), ph, pw);
    same_shape("cuda::patchify", "patches", patches.shape(), "expected", g.patches);
    run_copy<T>("patchify", dev(pixels), dev(patches), g.shape6, g.pixel_strides, g.patch_strides);
}

template <class T>
void patchify_backward(const DeviceTensor<T>& d_patches, int64_t ph, int64_t pw, DeviceTensor<T>& d_pixels) {
    require("cuda::patchify_backward");
    const PatchGeom g = patch_geom("cuda::patchify_backward", d_pixels.shape(), ph, pw);
    same_shape("cuda::patchify_backward", "d_patches", d_patches.shape(), "expected", g.patches);
    const Shape& px = d_pixels.shape();
    if ((px[2] % ph != 0 || px[3] % pw != 0) && d_pixels.numel() > 0)
        COEFFNET_CUDA_CHECK(cudaMemsetAsync(d_pixels.data(), 0, d_pixels.bytes(), stream()));
    run_copy<T>("patchify_backward", dev(d_patches), dev(d_pixels), g.shape6, g.patch_strides, g.pixel_strides);
}

// ---- embedding ------------------------------------------------------------------------------------------------

template <class T>
void embedding_forward(const DeviceTensor<int64_t>& indices, const DeviceTensor<T>& weight, DeviceTensor<T>& out) {
    using DT = device_t<T>;
    require("cuda::embedding_forward");
    const char* op = "cuda::embedding_forward";
    check(weight.shape().size() == 2, op, ": weight must be [num_embeddings, dim], got ", shape_str(weight.shape()));
    const int64_t V = weight.shape()[0], D = weight.shape()[1], rows = indices.numel();
    Shape os = indices.shape();
    os.push_back(D);
    same_shape(op, "out", out.shape(), "indices shape + [dim]", os);
    if (rows == 0 || D == 0) return;
    constexpr int FULL = kern::vec16<DT>;
    const bool vec_ok = D % FULL == 0 && aligned16({dev(weight), dev(out)});
    with_vec<FULL>(vec_ok ? FULL : 1, [&](auto v) {
        constexpr int VEC = decltype(v)::value;
        const unsigned grid = static_cast<unsigned>(std::clamp<int64_t>(ceil_div(rows, 8), 1, max_row_grid()));
        launch<kern::embedding_fwd<DT, VEC>>(grid, dim3(32, 8), 0, stream())(indices.data(), dev(weight), dev(out), rows, V, D);
    });
    COEFFNET_LAUNCH_CHECK("embedding_fwd");
}

template <class T>
void embedding_backward(const DeviceTensor<int64_t>& indices, const DeviceTensor<T>& d_out, DeviceTensor<float>& d_weight) {
    using DT = device_t<T>;
    require("cuda::embedding_backward");
    const char* op = "cuda::embedding_backward";
    check(d_weight.shape().size() == 2, op, ": d_weight must be [num_embeddings, dim], got ", shape_str(d_weight.shape()));
    const int64_t V = d_weight.shape()[0], D = d_weight.shape()[1], rows = indices.numel();
    Shape os = indices.shape();
    os.push_back(D);
    same_shape(op, "d_out", d_out.shape(), "indices shape + [dim]", os);
    if (rows == 0 || D == 0) return;
    constexpr int FULL = kern::vec16<DT>;
    const bool vec_ok = D % FULL == 0 && aligned16(dev(d_out));
    with_vec<FULL>(vec_ok ? FULL : 1, [&](auto v) {
        constexpr int VEC = decltype(v)::value;
        const unsigned grid = static_cast<unsigned>(std::clamp<int64_t>(ceil_div(rows, 8), 1, max_row_grid()));
        launch<kern::embedding_bwd<DT, VEC>>(grid, dim3(32, 8), 0, stream())(indices.data(), dev(d_out), d_weight.data(), rows,
                                                                          V, D);
    });
    COEFFNET_LAUNCH_CHECK("embedding_bwd");
}

// ---- instantiations ---------------------------------------------------------------------------------------------

#define COEFFNET_CUDA_ROW_OPS(T)                                                                                          \
    template void mix_heads<T>(const DeviceTensor<T>&, const DeviceTensor<float>&, DeviceTensor<T>&);                    \
    template void mix_heads_backward<T>(const DeviceTensor<T>&, const DeviceTensor<T>&, const DeviceTensor<float>&,       \
                                        DeviceTensor<T>*, DeviceTensor<float>*);                                          \
    template void softmax_forward<T>(const DeviceTensor<T>&, DeviceTensor<T>&, float, const DeviceTensor<float>*);        \
    template void softmax_backward<T>(const DeviceTensor<T>&, const DeviceTensor<T>&, DeviceTensor<T>&, float);           \
    template void layernorm_forward<T>(const DeviceTensor<T>&, const DeviceTensor<T>*, const DeviceTensor<T>*, float,     \
                                       DeviceTensor<T>&, DeviceTensor<float>&, DeviceTensor<float>&);                     \
    template void layernorm_backward<T>(const DeviceTensor<T>&, const DeviceTensor<T>&, const DeviceTensor<T>*,           \
                                        const DeviceTensor<float>&, const DeviceTensor<float>&, DeviceTensor<T>*,         \
                                        DeviceTensor<T>*, DeviceTensor<T>*);                                              \
    template void sum_last<T>(const DeviceTensor<T>&, DeviceTensor<T>&, bool);                                            \
    template void cross_entropy_forward<T>(const DeviceTensor<T>&, const DeviceTensor<int64_t>&, int64_t,                 \
                                           DeviceTensor<float>&, DeviceTensor<float>&);                                   \
    template void cross_entropy_backward<T>(const DeviceTensor<T>&, const DeviceTensor<int64_t>&, int64_t,                \
                                            const DeviceTensor<float>&, const DeviceTensor<float>&,                       \
                                            const DeviceTensor<float>*, DeviceTensor<T>&);

#define COEFFNET_CUDA_CHEAP_OPS(T)                                                                                        \
    template void activation_forward<T>(Activation, const DeviceTensor<T>&, const DeviceTensor<T>*, DeviceTensor<T>&);    \
    template void activation_backward<T>(Activation, const DeviceTensor<T>&, const DeviceTensor<T>*,                      \
                                         const DeviceTensor<T>&, DeviceTensor<T>&);                                       \
    template void bias_add<T>(const DeviceTensor<T>&, const DeviceTensor<T>&, DeviceTensor<T>&);                          \
    template void bias_add_backward<T>(const DeviceTensor<T>&, DeviceTensor<T>&);                                         \
    template void residual_add<T>(const DeviceTensor<T>&, const DeviceTensor<T>&, DeviceTensor<T>&);                      \
    template void sum_last_backward<T>(const DeviceTensor<T>&, DeviceTensor<T>&, bool);                                   \
    template void adamw_step<T>(DeviceTensor<float>&, const DeviceTensor<T>&, DeviceTensor<float>&, DeviceTensor<float>&, \
                                const AdamWParams&, DeviceTensor<T>*);                                                    \
    template void permute<T>(const DeviceTensor<T>&, const std::vector<int64_t>&, DeviceTensor<T>&);                      \
    template void concat<T>(const std::vector<const DeviceTensor<T>*>&, int64_t, DeviceTensor<T>&);                       \
    template void split<T>(const DeviceTensor<T>&, int64_t, const std::vector<DeviceTensor<T>*>&);                        \
    template void patchify<T>(const DeviceTensor<T>&, int64_t, int64_t, DeviceTensor<T>&);                                \
    template void patchify_backward<T>(const DeviceTensor<T>&, int64_t, int64_t, DeviceTensor<T>&);                       \
    template void embedding_forward<T>(const DeviceTensor<int64_t>&, const DeviceTensor<T>&, DeviceTensor<T>&);           \
    template void embedding_backward<T>(const DeviceTensor<int64_t>&, const DeviceTensor<T>&, DeviceTensor<float>&);

COEFFNET_CUDA_ROW_OPS(float)
COEFFNET_CUDA_ROW_OPS(bfloat16_t)
#ifdef COEFFNET_CUDA_FULL_MATRIX
COEFFNET_CUDA_ROW_OPS(half_t)
#endif
COEFFNET_CUDA_CHEAP_OPS(float)
COEFFNET_CUDA_CHEAP_OPS(bfloat16_t)
COEFFNET_CUDA_CHEAP_OPS(half_t)

template void convert<float, bfloat16_t>(const DeviceTensor<float>&, DeviceTensor<bfloat16_t>&);
template void convert<bfloat16_t, float>(const DeviceTensor<bfloat16_t>&, DeviceTensor<float>&);
template void convert<float, half_t>(const DeviceTensor<float>&, DeviceTensor<half_t>&);
template void convert<half_t, float>(const DeviceTensor<half_t>&, DeviceTensor<float>&);

#undef COEFFNET_CUDA_ROW_OPS
#undef COEFFNET_CUDA_CHEAP_OPS

}  // namespace coeffnet::cuda
