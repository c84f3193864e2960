// coeffnet/cuda/launchers.hpp: host launchers of coeffnet's hand-written CUDA kernels
// (kernels/*.cuh, compiled in src/cuda/launchers.cu), forward and backward.
//
// A plain C++ header: g++ can include it; the kernels themselves are only seen by nvcc.
// Every launcher
//   - first calls coeffnet::cuda::require(<its name>), so without a usable GPU it throws
//     coeffnet::Error("cuda::<name>: no usable CUDA device (<reason>)") before touching
//     its arguments;
//   - checks shapes (outputs are allocated by the caller with the documented shape) and
//     throws coeffnet::Error naming the launcher and both shapes on a mismatch;
//   - enqueues on Context::get().stream() and returns without synchronising;
//   - computes in fp32 registers whatever the storage type T.
// Storage types: float and bfloat16_t everywhere; half_t for the elementwise, copy and
// optimiser launchers (cheap to compile). The row reductions (softmax, layer norm,
// cross-entropy, sums) and mixing get half_t only when the library is built with
// COEFFNET_CUDA_FULL_MATRIX (otherwise using them with half_t fails to link).
//
// Semantics match the CPU ops named beside each launcher (include/coeffnet/ops/...).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "../core/dtype.hpp"
#include "../core/error.hpp"
#include "../core/rng.hpp"
#include "../ops/coeff_spec.hpp"
#include "tensor.hpp"

namespace coeffnet::cuda {

// ---- launch-configuration choices (pure host functions, also used by the tests) -----------

// How a row kernel (softmax, layer norm, last-axis sums, cross-entropy) covers rows of
// `cols` elements of `elem_bytes` bytes. warp_per_row: blockDim (32, rows_per_block), each
// lane keeps its share of the row in registers; block_per_row: blockDim (threads, 1), the
// row in registers across the block; block_streaming: a block per row that re-reads the row
// from global memory (rows too long for registers). vec: elements per access (16 bytes when
// cols is a multiple and the pointers are 16-byte aligned, else 1). grid: blocks launched
// (rows are walked grid-stride, so any row count works).
struct RowLaunch {
    enum Kind { warp_per_row, block_per_row, block_streaming };
    Kind kind = warp_per_row;
    int vec = 1;
    int threads = 32;         // threads per row
    int rows_per_block = 1;   // warp_per_row only
    int64_t grid = 1;
};
inline constexpr int64_t row_warp_max_cols = 1024;  // warp_per_row up to this width (32 per lane)
inline constexpr int row_block_max_threads = 512;    // block_per_row: 512 threads x 16 elements
inline constexpr int row_block_elems_per_thread = 16;  // = 8192 columns cached; wider rows stream
RowLaunch row_launch(int64_t rows, int64_t cols, int elem_bytes, bool aligned16);
const char* row_kind_name(RowLaunch::Kind k);

// A strided copy after merging dimensions that are contiguous in both source and destination
// and dropping dimensions of size 1 (what permute, concat, split and patchify run).
struct CopyPlan {
    int rank = 0;  // <= 6 (more is an error: the kernel supports rank 6)
    int64_t shape[6] = {0, 0, 0, 0, 0, 0};
    int64_t src_stride[6] = {0, 0, 0, 0, 0, 0};
    int64_t dst_stride[6] = {0, 0, 0, 0, 0, 0};
    int64_t numel = 0;
};
CopyPlan plan_copy(const Shape& shape, const Shape& src_strides, const Shape& dst_strides);

// ---- test hook: grid caps ----------------------------------------------------------------------
// For tests only (tests/cuda/test_kernels.cpp, under the block emulator): caps the number of blocks
// every launcher of this library launches along its grid-stride loops (row kernels, whose grid is
// otherwise capped at 2^20 blocks; flat elementwise kernels, 65535 * 16 blocks; mix_bwd, 1024;
// the embedding kernels, 2^20; the attention launchers' reductions, 65535), so that those loops
// run more than once at shapes the emulator can afford. The kernels must give the same results
// under any cap. blocks <= 0 restores the defaults. Process-wide; set it while nothing is being
// launched. Not for production use: a smaller grid only costs parallelism.
void set_max_grid_for_testing(int64_t blocks);
// The cap in force (0: none, the defaults apply); row_launch's grid honours it too.
int64_t max_grid_for_testing();

// ---- alpha' = I + Dropout_p(alpha) (ops/coeff_spec.hpp) ---------------------------------------
// d: the alpha draw, coeff::reserve_dropout<float>(p, training, gen, H * H, ...), which reserves
// exactly what the CPU op reserves (nothing in evaluation or at p == 0); each element is
// coeff::alpha_prime_element, the CPU's rule and words.
// alpha [H, H] -> alpha_prime [H, H] (fp32 both; alpha is an fp32 master parameter).
void alpha_prime(const DeviceTensor<float>& alpha, DeviceTensor<float>& alpha_prime, const DropoutDraw<float>& d,
                 bool residual = true);
// d_alpha = d_alpha_prime * multiplier (the dropout's backward; the identity has no gradient).
void alpha_prime_backward(const DeviceTensor<float>& d_alpha_prime, DeviceTensor<float>& d_alpha,
                          const DropoutDraw<float>& d);

// ---- coefficient mixing (ops/attention.hpp mix_heads) ---------------------------------------
// Phat[b, h] = sum_i alpha_prime[h, i] P[b, i]; P, Phat [B, H, N, M]; H <= 64.
template <class T>
void mix_heads(const DeviceTensor<T>& maps, const DeviceTensor<float>& alpha_prime, DeviceTensor<T>& mixed);
// d_maps[b, i] = sum_h alpha_prime[h, i] d_mixed[b, h];
// d_alpha_prime[h, i] = sum_{b, n, m} d_mixed[b, h, n, m] maps[b, i, n, m] (fp32, deterministic).
// Either output may be null.
template <class T>
void mix_heads_backward(const DeviceTensor<T>& d_mixed, const DeviceTensor<T>& maps, const DeviceTensor<float>& alpha_prime,
                        DeviceTensor<T>* d_maps, DeviceTensor<float>* d_alpha_prime);

// ---- softmax over the last axis (ops/softmax.hpp softmax, with attention's scale) ------------
// y = softmax(scale * x + mask). mask (fp32, optional) broadcasts to x's shape (PyTorch rules,
// e.g. [B, 1, 1, M] or [1, 1, N, M]); a row that is all -inf gives zeros, as on the CPU.
template <class T>
void softmax_forward(const DeviceTensor<T>& x, DeviceTensor<T>& y, float scale = 1.f,
                     const DeviceTensor<float>* mask = nullptr);
// dx = scale * y * (dy - rowsum(dy * y)).  dx may alias dy.
template <class T>
void softmax_backward(const DeviceTensor<T>& y, const DeviceTensor<T>& dy, DeviceTensor<T>& dx, float scale = 1.f);

// ---- layer norm over the last axis (ops/layernorm.hpp) --------------------------------------
// y = (x - mean) * rstd * weight + bias; weight/bias [C] optional; mean, rstd [rows] fp32.
template <class T>
void layernorm_forward(const DeviceTensor<T>& x, const DeviceTensor<T>* weight, const DeviceTensor<T>* bias, float eps,
                       DeviceTensor<T>& y, DeviceTensor<float>& mean, DeviceTensor<float>& rstd);
// dx (optional), d_weight = sum_rows(dy * xhat) and d_bias = sum_rows(dy) (optional, [C],
// deterministic two-stage column sums).
template <class T>
void layernorm_backward(const DeviceTensor<T>& dy, const DeviceTensor<T>& x, const DeviceTensor<T>* weight,
                        const DeviceTensor<float>& mean, const DeviceTensor<float>& rstd, DeviceTensor<T>* dx,
                        DeviceTensor<T>* d_weight, DeviceTensor<T>* d_bias);

// ---- activations (ops/elementwise.hpp gelu, silu) --------------------------------------------
enum class Activation { gelu_erf, gelu_tanh, silu, identity };
// y = act(x + bias); bias [C] over the last axis, optional. y may alias x.
template <class T>
void activation_forward(Activation a, const DeviceTensor<T>& x, const DeviceTensor<T>* bias, DeviceTensor<T>& y);
// dx = dy * act'(x + bias). dx may alias dy. (The bias gradient is bias_add_backward(dx).)
template <class T>
void activation_backward(Activation a, const DeviceTensor<T>& x, const DeviceTensor<T>* bias, const DeviceTensor<T>& dy,
                         DeviceTensor<T>& dx);
// y = x + bias (bias [C] over the last axis); y may alias x. Backward: dx = dy (nothing to run).
template <class T>
void bias_add(const DeviceTensor<T>& x, const DeviceTensor<T>& bias, DeviceTensor<T>& y);
// d_bias = sum over all leading axes of dy (deterministic two-stage column sums).
template <class T>
void bias_add_backward(const DeviceTensor<T>& dy, DeviceTensor<T>& d_bias);
// y = a + b (same shapes); y may alias either. Backward: both gradients are dy (nothing to run).
template <class T>
void residual_add(const DeviceTensor<T>& a, const DeviceTensor<T>& b, DeviceTensor<T>& y);

// ---- reductions over the last axis (ops/reduce.hpp sum/mean with axes = {-1}) ----------------
// y [leading dims] = sum (or mean) over the last axis of x; fp32 accumulation.
template <class T>
void sum_last(const DeviceTensor<T>& x, DeviceTensor<T>& y, bool mean = false);
// Backward: dx[..., j] = dy[...] (times 1/C for mean).
template <class T>
void sum_last_backward(const DeviceTensor<T>& dy, DeviceTensor<T>& dx, bool mean = false);

// ---- fused log-softmax + cross-entropy (ops/softmax.hpp cross_entropy, Reduction::mean) ------
// logits [rows, C] (any leading shape, flattened), targets [rows] int64. Writes
// loss [2] = {mean over non-ignored targets (NaN when all are ignored, as PyTorch), number of
// non-ignored targets} and lse [rows] (log-sum-exp per row, saved for backward). A target
// outside [0, C) (and not ignore_index) makes the loss NaN (the CPU throws; a kernel cannot).
template <class T>
void cross_entropy_forward(const DeviceTensor<T>& logits, const DeviceTensor<int64_t>& targets, int64_t ignore_index,
                           DeviceTensor<float>& loss, DeviceTensor<float>& lse);
// d_logits = (softmax(logits) - onehot(target)) * d_loss / count; zero rows for ignored
// targets. d_loss: a device scalar [1] (null = 1).
template <class T>
void cross_entropy_backward(const DeviceTensor<T>& logits, const DeviceTensor<int64_t>& targets, int64_t ignore_index,
                            const DeviceTensor<float>& loss, const DeviceTensor<float>& lse,
                            const DeviceTensor<float>* d_loss, DeviceTensor<T>& d_logits);

// ---- AdamW (train/optim.hpp AdamW::step, PyTorch's rule) -------------------------------------
struct AdamWParams {
    double lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 1e-2;
    int64_t step = 1;  // the step being taken (1 for the first), as State::step after ++
};
// master (fp32 weights), m, v (fp32 moments) updated in place from grad (T); when param is
// given it receives the updated weights rounded to T (the model's bf16 copy).
template <class T>
void adamw_step(DeviceTensor<float>& master, const DeviceTensor<T>& grad, DeviceTensor<float>& m, DeviceTensor<float>& v,
                const AdamWParams& p, DeviceTensor<T>* param = nullptr);

// ---- copies ------------------------------------------------------------------------------------
// y = x.permute(perm) made contiguous (rank <= 6 after merging; y has the permuted shape).
template <class T>
void permute(const DeviceTensor<T>& x, const std::vector<int64_t>& perm, DeviceTensor<T>& y);
// Element-type conversion (same shape).
template <class From, class To>
void convert(const DeviceTensor<From>& x, DeviceTensor<To>& y);
// out = concat(parts, axis) (ops/shape.hpp concat). Its backward is split.
template <class T>
void concat(const std::vector<const DeviceTensor<T>*>& parts, int64_t axis, DeviceTensor<T>& out);
// outs[k] = the k-th slice of x along axis, sizes taken from the outputs' shapes (ops/shape.hpp
// split, made contiguous). Its backward is concat.
template <class T>
void split(const DeviceTensor<T>& x, int64_t axis, const std::vector<DeviceTensor<T>*>& outs);
// pixels [B, C, H, W] -> patches [B, (H/ph)(W/pw), C*ph*pw] in (channel, row, column) order
// (models/vit.hpp patchify); pixels past the last whole patch are dropped.
template <class T>
void patchify(const DeviceTensor<T>& pixels, int64_t ph, int64_t pw, DeviceTensor<T>& patches);
// d_pixels [B, C, H, W] from d_patches (zeros where pixels were dropped).
template <class T>
void patchify_backward(const DeviceTensor<T>& d_patches, int64_t ph, int64_t pw, DeviceTensor<T>& d_pixels);

// ---- embedding (ops/embedding.hpp) -------------------------------------------------------------
// out [..., D] = weight [V, D] rows at indices [...]; an index outside [0, V) gives a NaN row
// (the CPU throws; a kernel cannot).
template <class T>
void embedding_forward(const DeviceTensor<int64_t>& indices, const DeviceTensor<T>& weight, DeviceTensor<T>& out);
// d_weight [V, D] (fp32) += scatter of d_out rows (fp32 atomics: repeated indices add in an
// unspecified order). Zero d_weight first for a fresh gradient. Bad indices are skipped.
template <class T>
void embedding_backward(const DeviceTensor<int64_t>& indices, const DeviceTensor<T>& d_out, DeviceTensor<float>& d_weight);

}  // namespace coeffnet::cuda
