// CUDA runtime: status, errors without a GPU, the check macros, DeviceTensor round trips, the caching
// allocator, and cuBLAS gemm/linear against the CPU ops.
//
// The first group runs everywhere (a machine without a GPU must give clear errors, not crashes);
// every TEST_CASE that needs a device starts with COEFFNET_REQUIRE_GPU() and is reported as skipped
// where none is usable. Low precision (tf32, bf16, fp16) is judged against the error of the same
// product done on the CPU with inputs rounded the same way, not against a fixed number.
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cmath>
#include <cstring>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <coeffnet/coeffnet.hpp>
#include <coeffnet/cuda/check.hpp>
#include <coeffnet/cuda/gemm.hpp>
#include <coeffnet/cuda/runtime.hpp>
#include <coeffnet/cuda/tensor.hpp>

#include "../test_util.hpp"
#include "testing.hpp"

using namespace coeffnet;
using namespace coeffnet::test;
namespace cu = coeffnet::cuda;

namespace {

Tensor<double> to_double(const Tensor<float>& t) { return t.cast<double>(); }

// Rounds every element as the precision stores it (float -> bf16 / fp16 / tf32 -> float).
Tensor<float> round_as(const Tensor<float>& t, const char* how) {
    if (std::strcmp(how, "bf16") == 0) return round_bf16(t);
    if (std::strcmp(how, "fp16") == 0) return t.cast<half_t>().cast<float>();
    Tensor<float> out = t.contiguous().clone();
    if (std::strcmp(how, "tf32") == 0) {  // 10 mantissa bits, nearest-even
        float* p = out.data();
        for (int64_t i = 0; i < out.numel(); ++i) {
            uint32_t b = std::bit_cast<uint32_t>(p[i]);
            b += 0xfffu + ((b >> 13) & 1u);
            p[i] = std::bit_cast<float>(b & ~0x1fffu);
        }
    }
    return out;
}

// op(X) of a stored operand: the last two axes swapped when `trans`.
Tensor<double> op(const Tensor<double>& x, bool trans) { return trans ? x.mT() : x; }

}  // namespace

// ---- runs on every machine -------------------------------------------------------------------

TEST_CASE("cuda status: cached, and either usable or says why") {
    const cu::Status& s = cu::status();
    CHECK(&s == &cu::status());
    MESSAGE("cuda::describe(): " << cu::describe());
    if (s.usable) {
        CHECK(s.reason.empty());
        CHECK(s.device_count >= 1);
        CHECK(!s.name.empty());
        CHECK(s.cc_major >= 8);
        CHECK(s.total_memory > 0);
    } else {
        CHECK(!s.reason.empty());
        CHECK(contains(cu::describe(), s.reason));
        // Without a driver (this project's CI), the reason is the runtime's: it names the failing call.
        if (s.device_count == 0 && s.driver_version == 0) CHECK(contains(s.reason, "cudaGetDeviceCount"));
    }
    CHECK(!s.built_for.empty());
}

TEST_CASE("cuda require: throws an Error naming the caller and the reason, or nothing on a GPU") {
    const cu::Status& s = cu::status();
    const std::string msg = error_of([] { cu::require("my_op(x)"); });
    if (s.usable) {
        CHECK(msg.empty());
    } else {
        CHECK(msg == "my_op(x): no usable CUDA device (" + s.reason + ")");
    }
}

TEST_CASE("cuda without a GPU: every entry point throws a clear Error") {
    COEFFNET_REQUIRE_NO_GPU();
    const std::string reason = cu::status().reason;
    const std::string e1 = error_of([] { (void)cu::DeviceTensor<float>::empty({2, 3}); });
    CHECK(contains(e1, "DeviceTensor::empty([2, 3])"));
    CHECK(contains(e1, "no usable CUDA device"));
    CHECK(contains(e1, reason));
    CHECK(contains(error_of([] { (void)cu::DeviceTensor<bfloat16_t>::zeros({4}); }), "no usable CUDA device"));
    CHECK(contains(error_of([] { (void)cu::DeviceTensor<float>::from_host(Tensor<float>::ones({3})); }),
                   "no usable CUDA device"));
    CHECK(contains(error_of([] { (void)cu::DeviceTensor<uint8_t>::empty({0}); }), "no usable CUDA device"));
    CHECK(contains(error_of([] { (void)cu::Context::get(); }), "coeffnet::cuda::Context: no usable CUDA device"));
    CHECK(contains(error_of([] { cu::copy_host_to_device(nullptr, nullptr, 0); }), "no usable CUDA device"));
}

TEST_CASE("cuda check macros: a failing call becomes an Error naming the call, the error and file:line") {
    auto bad_call = [] { return cudaErrorInvalidValue; };
    const int line = __LINE__ + 1;
    const std::string msg = error_of([&] { COEFFNET_CUDA_CHECK(bad_call()); });
    CHECK(contains(msg, "CUDA error: bad_call() failed"));
    CHECK(contains(msg, "cudaErrorInvalidValue"));
    CHECK(contains(msg, cudaGetErrorString(cudaErrorInvalidValue)));
    CHECK(contains(msg, "test_runtime.cpp:" + std::to_string(line)));
    CHECK(error_of([] { COEFFNET_CUDA_CHECK(cudaSuccess); }).empty());

    auto bad_blas = [] { return CUBLAS_STATUS_INVALID_VALUE; };
    const int line2 = __LINE__ + 1;
    const std::string m2 = error_of([&] { COEFFNET_CUBLAS_CHECK(bad_blas()); });
    CHECK(contains(m2, "cuBLAS error: bad_blas() failed"));
    CHECK(contains(m2, "CUBLAS_STATUS_INVALID_VALUE"));
    CHECK(contains(m2, "test_runtime.cpp:" + std::to_string(line2)));
    CHECK(error_of([] { COEFFNET_CUBLAS_CHECK(CUBLAS_STATUS_SUCCESS); }).empty());

    // The non-throwing form for destructors logs and reports failure.
    CHECK_FALSE(COEFFNET_CUDA_LOG(bad_call()));
    CHECK(COEFFNET_CUDA_LOG(cudaSuccess));
}

TEST_CASE("cuda undefined DeviceTensors and shape rules are checked on the host") {
    const cu::DeviceTensor<float> u;
    CHECK_FALSE(u.defined());
    CHECK(u.numel() == 0);
    CHECK(u.data() == nullptr);
    CHECK(contains(error_of([&] { (void)u.to_host(); }), "DeviceTensor::to_host: the DeviceTensor is undefined"));
    cu::DeviceTensor<float> c;
    CHECK(contains(error_of([&] { cu::gemm(u, u, c, false, false); }), "cuda::gemm: the DeviceTensor is undefined"));
    CHECK(contains(error_of([&] { cu::linear(u, u, u, c); }), "cuda::linear: the DeviceTensor is undefined"));

    CHECK(cu::gemm_output_shape({7, 5}, {5, 3}, false, false) == Shape{7, 3});
    CHECK(cu::gemm_output_shape({5, 7}, {3, 5}, true, true) == Shape{7, 3});
    CHECK(cu::gemm_output_shape({4, 7, 5}, {5, 3}, false, false) == Shape{4, 7, 3});
    CHECK(cu::gemm_output_shape({7, 5}, {2, 4, 5, 3}, false, false) == Shape{2, 4, 7, 3});
    CHECK(cu::gemm_output_shape({1, 4, 7, 5}, {2, 1, 5, 3}, false, false) == Shape{2, 4, 7, 3});
    CHECK(contains(error_of([] { (void)cu::gemm_output_shape({7, 5}, {4, 3}, false, false); }),
                   "inner dimensions differ"));
    CHECK(contains(error_of([] { (void)cu::gemm_output_shape({2, 7, 5}, {3, 5, 3}, false, false); }),
                   "cannot be broadcast"));
    CHECK(contains(error_of([] { (void)cu::gemm_output_shape({5}, {5, 3}, false, false); }), "at least 2 axes"));
}

// ---- need a GPU ------------------------------------------------------------------------------

TEST_CASE("cuda DeviceTensor: host <-> device round trips for every dtype") {
    COEFFNET_REQUIRE_GPU();
    Generator gen(7);
    // In [0, 100): float -> uint8_t of a negative value would be undefined behaviour on the host.
    const Tensor<float> src = Tensor<float>::uniform({7, 197}, gen, 0.0, 100.0);
    auto round_trip = [&](auto tag) {
        using T = decltype(tag);
        INFO("dtype " << dtype_name<T>());
        const Tensor<T> want = src.cast<T>();
        const auto d = cu::DeviceTensor<T>::from_host(src);
        CHECK(d.shape() == Shape{7, 197});
        CHECK(d.numel() == 7 * 197);
        CHECK(d.bytes() == 7 * 197 * sizeof(T));
        const Tensor<T> back = d.to_host();
        CHECK(std::memcmp(back.data(), want.data(), d.bytes()) == 0);  // bit-exact, conversion on the host
        CHECK(max_abs_diff(to_double(d.to_host_float()), to_double(want.template cast<float>())) == 0.0);
        // From a non-contiguous view, and a reshape sharing storage.
        const auto dt = cu::DeviceTensor<T>::from_host(src.mT());
        const Tensor<T> want_t = src.mT().cast<T>();
        CHECK(std::memcmp(dt.to_host().data(), want_t.data(), dt.bytes()) == 0);
        const auto r = d.reshape({197, 7});
        CHECK(r.data() == d.data());
        CHECK(contains(error_of([&] { (void)d.reshape({5, 5}); }), "cannot become"));
        // zeros and empty shapes.
        const auto z = cu::DeviceTensor<T>::zeros({3, 0, 2});
        CHECK(z.numel() == 0);
        CHECK(z.to_host().shape() == Shape{3, 0, 2});
        const auto z2 = cu::DeviceTensor<T>::zeros({1025});
        for (float v : z2.to_host_float().to_vector()) CHECK(v == 0.0f);
        // Raw copies.
        std::vector<T> raw(static_cast<size_t>(d.numel()));
        d.copy_to_host(raw.data());
        CHECK(std::memcmp(raw.data(), want.data(), d.bytes()) == 0);
        auto e = cu::DeviceTensor<T>::empty({7, 197});
        e.copy_from_host(raw.data());
        CHECK(std::memcmp(e.to_host().data(), want.data(), d.bytes()) == 0);
    };
    round_trip(float{});
    round_trip(bfloat16_t{});
    round_trip(half_t{});
    round_trip(int32_t{});
    round_trip(int64_t{});
    round_trip(uint8_t{});
}

TEST_CASE("cuda caching allocator: steady state reuses blocks, stats add up, thread-safe") {
    COEFFNET_REQUIRE_GPU();
    cu::CachingAllocator& alloc = cu::Context::get().allocator();
    cu::Context::get().synchronize();
    const cu::AllocatorStats base = alloc.stats();
    auto step = [] {  // a "training step": a few temporaries of fixed shapes
        auto a = cu::DeviceTensor<float>::empty({64, 197, 768});
        auto b = cu::DeviceTensor<bfloat16_t>::empty({64, 12, 197, 197});
        auto c = cu::DeviceTensor<float>::zeros({1000});
        auto d = cu::DeviceTensor<int64_t>::empty({3});
        return a.bytes() + b.bytes() + c.bytes() + d.bytes();
    };
    step();
    const cu::AllocatorStats warm = alloc.stats();
    CHECK(warm.bytes_in_use == base.bytes_in_use);  // all released
    for (int i = 0; i < 5; ++i) step();
    const cu::AllocatorStats steady = alloc.stats();
    CHECK(steady.num_raw_malloc == warm.num_raw_malloc);  // no cudaMalloc in steady state
    CHECK(steady.num_allocs == warm.num_allocs + 5 * 4);
    CHECK(steady.num_cache_hits >= warm.num_cache_hits + 5 * 4);
    CHECK(steady.bytes_in_use == base.bytes_in_use);
    CHECK(steady.bytes_reserved >= steady.bytes_in_use);

    {
        auto t = cu::DeviceTensor<float>::empty({1 << 20});
        const cu::AllocatorStats s = alloc.stats();
        // The rounded size, plus a remainder under 1 MiB when a larger cached block was not worth splitting.
        CHECK(s.bytes_in_use >= base.bytes_in_use + cu::CachingAllocator::round_size(t.bytes()));
        CHECK(s.bytes_in_use < base.bytes_in_use + cu::CachingAllocator::round_size(t.bytes()) + (size_t{1} << 20));
        CHECK(s.peak_in_use >= s.bytes_in_use);
    }
    alloc.reset_peak();
    CHECK(alloc.stats().peak_in_use == alloc.stats().bytes_in_use);

    // Threads allocate and release concurrently; the books balance afterwards.
    std::vector<std::thread> threads;
    std::atomic<int> failures{0};
    const cudaStream_t stream = cu::Context::get().stream();
    for (int t = 0; t < 4; ++t)
        threads.emplace_back([&, t] {
            try {
                for (int i = 0; i < 200; ++i) {
                    void* p = alloc.allocate(static_cast<size_t>(512 * (1 + (i + t) % 7)), stream);
                    alloc.release(p);
                }
            } catch (...) {
                ++failures;
            }
        });
    for (auto& th : threads) th.join();
    CHECK(failures.load() == 0);
    CHECK(alloc.stats().bytes_in_use == base.bytes_in_use);

    alloc.empty_cache();
    const cu::AllocatorStats emptied = alloc.stats();
    // Segments still holding a block in use stay; the books balance.
    CHECK(emptied.bytes_reserved == emptied.bytes_in_use + emptied.bytes_cached + emptied.bytes_unfreed);
    CHECK(emptied.bytes_unfreed == 0);
    CHECK(emptied.num_raw_free > steady.num_raw_free);
}

namespace {

// One gemm case: C = alpha op(A) op(B) + beta C on the GPU in T (precision p), against the CPU in double.
// `how` names the rounding of the inputs that p implies ("none" for fp32).
template <class T>
void check_gemm(const Shape& as, const Shape& bs, bool ta, bool tb, float alpha, float beta, cu::GemmPrecision p,
                const char* how) {
    CAPTURE(shape_str(as));
    CAPTURE(shape_str(bs));
    CAPTURE(ta);
    CAPTURE(tb);
    CAPTURE(dtype_name<T>());
    CAPTURE(cu::precision_name(p));
    Generator gen(11);
    const Tensor<float> a = Tensor<float>::uniform(as, gen, -1.0, 1.0);
    const Tensor<float> b = Tensor<float>::uniform(bs, gen, -1.0, 1.0);
    const Shape cs = cu::gemm_output_shape(as, bs, ta, tb);
    const Tensor<float> c0 = Tensor<float>::uniform(cs, gen, -1.0, 1.0);
    // The stored inputs (what the GPU sees) are the T-rounded ones.
    const Tensor<float> a_t = a.cast<T>().template cast<float>(), b_t = b.cast<T>().template cast<float>();
    const Tensor<float> c_t = c0.cast<T>().template cast<float>();

    auto reference = [&](const Tensor<float>& x, const Tensor<float>& y) {
        return add(mul(matmul(op(to_double(x), ta), op(to_double(y), tb)), Tensor<double>::scalar(alpha)),
                   mul(to_double(c_t), Tensor<double>::scalar(beta)));
    };
    const Tensor<double> exact = reference(a_t, b_t);

    const auto da = cu::DeviceTensor<T>::from_host(a), db = cu::DeviceTensor<T>::from_host(b);
    auto dc = cu::DeviceTensor<T>::from_host(c0);
    cu::gemm(da, db, dc, ta, tb, alpha, beta, p);
    const double err = max_abs_diff(to_double(dc.to_host_float()), exact);

    // The same product on the CPU with the precision's rounding of inputs and output.
    const bool out16 = !std::is_same_v<T, float>;
    const Tensor<float> a_r = round_as(a_t, how), b_r = round_as(b_t, how);
    Tensor<float> cpu = reference(a_r, b_r).template cast<float>();
    if (out16) cpu = cpu.cast<T>().template cast<float>();
    const double cpu_err = max_abs_diff(to_double(cpu), exact);
    const int64_t K = ta ? as[as.size() - 2] : as.back();
    const double fp32_tol = 2e-6 * static_cast<double>(K + 2);  // fp32 accumulation over K terms of size <= 1
    CAPTURE(err);
    CAPTURE(cpu_err);
    // Stored 16-bit inputs are exact, so only the output rounding differs: within 2x of the CPU's.
    // tf32 / FAST_16BF round inside cuBLAS, possibly by truncation (about twice the error of our
    // nearest-even emulation, and biased): within 4x.
    if (std::strcmp(how, "none") == 0 && !out16)
        CHECK(err <= fp32_tol);
    else if (std::strcmp(how, "none") == 0)
        CHECK(err <= 2.0 * cpu_err + fp32_tol);
    else
        CHECK(err <= 4.0 * cpu_err + fp32_tol);
}

}  // namespace

TEST_CASE("cuda gemm: fp32 matches the CPU on odd shapes, transposes, batches and broadcasts") {
    COEFFNET_REQUIRE_GPU();
    const auto fp32 = cu::GemmPrecision::fp32;
    for (int64_t M : {1, 7, 97})
        for (int64_t N : {1, 7, 197})
            for (int64_t K : {1, 40, 197})
                for (bool ta : {false, true})
                    for (bool tb : {false, true}) {
                        const Shape as = ta ? Shape{K, M} : Shape{M, K}, bs = tb ? Shape{N, K} : Shape{K, N};
                        check_gemm<float>(as, bs, ta, tb, 1.0f, 0.0f, fp32, "none");
                    }
    check_gemm<float>({3, 7, 40}, {3, 40, 9}, false, false, 1.0f, 0.0f, fp32, "none");      // batched
    check_gemm<float>({2, 3, 40, 7}, {2, 3, 9, 40}, true, true, 1.0f, 0.0f, fp32, "none");  // batched, both ^T
    check_gemm<float>({7, 40}, {2, 3, 40, 9}, false, false, 1.0f, 0.0f, fp32, "none");     // A broadcast
    check_gemm<float>({1, 1, 7, 40}, {2, 3, 40, 9}, false, false, 1.0f, 0.0f, fp32, "none");
    check_gemm<float>({4, 97, 64}, {64, 197}, false, false, 1.0f, 0.0f, fp32, "none");  // B broadcast
    check_gemm<float>({4, 97, 64}, {197, 64}, false, true, 0.5f, 2.0f, fp32, "none");   // alpha, beta
    check_gemm<float>({7, 0}, {0, 9}, false, false, 1.0f, 0.0f, fp32, "none");          // K = 0: C = 0
    check_gemm<float>({7, 0}, {0, 9}, false, false, 1.0f, 1.0f, fp32, "none");          // K = 0: C kept
}

TEST_CASE("cuda gemm: tf32, bf16 and fp16 are within a small multiple of the CPU's error at the same precision") {
    COEFFNET_REQUIRE_GPU();
    for (bool ta : {false, true})
        for (bool tb : {false, true})
            for (const Shape& mnk : {Shape{7, 9, 40}, Shape{97, 197, 768}, Shape{1, 197, 3072}}) {
                const int64_t M = mnk[0], N = mnk[1], K = mnk[2];
                const Shape as = ta ? Shape{2, K, M} : Shape{2, M, K}, bs = tb ? Shape{N, K} : Shape{K, N};
                check_gemm<float>(as, bs, ta, tb, 1.0f, 0.0f, cu::GemmPrecision::tf32, "tf32");
                check_gemm<float>(as, bs, ta, tb, 1.0f, 0.0f, cu::GemmPrecision::bf16, "bf16");
                check_gemm<bfloat16_t>(as, bs, ta, tb, 1.0f, 0.0f, cu::GemmPrecision::bf16, "none");
                check_gemm<half_t>(as, bs, ta, tb, 1.0f, 0.0f, cu::GemmPrecision::fp32, "none");
            }
    check_gemm<bfloat16_t>({3, 7, 40}, {40, 9}, false, false, 0.5f, 1.0f, cu::GemmPrecision::bf16, "none");
}

TEST_CASE("cuda gemm: shape mistakes throw naming the shapes") {
    COEFFNET_REQUIRE_GPU();
    auto a = cu::DeviceTensor<float>::zeros({2, 7, 5});
    auto b = cu::DeviceTensor<float>::zeros({5, 3});
    auto c = cu::DeviceTensor<float>::empty({2, 7, 4});
    CHECK(contains(error_of([&] { cu::gemm(a, b, c, false, false); }), "C is [2, 7, 4] but A [2, 7, 5]"));
    auto b3 = cu::DeviceTensor<float>::zeros({1, 3, 5, 3});
    auto c3 = cu::DeviceTensor<float>::empty({2, 3, 7, 3});
    auto a3 = cu::DeviceTensor<float>::zeros({2, 1, 7, 5});
    CHECK(contains(error_of([&] { cu::gemm(a3, b3, c3, false, false); }), "only a single-matrix operand"));
}

TEST_CASE("cuda linear: x W^T + b matches the CPU, with and without bias, fp32 and bf16") {
    COEFFNET_REQUIRE_GPU();
    Generator gen(5);
    for (int64_t K : {1, 40, 768})
        for (int64_t N : {1, 7, 197}) {
            CAPTURE(K);
            CAPTURE(N);
            const Tensor<float> x = Tensor<float>::uniform({2, 7, K}, gen, -1.0, 1.0);
            const Tensor<float> w = Tensor<float>::uniform({N, K}, gen, -1.0, 1.0);
            const Tensor<float> bias = Tensor<float>::uniform({N}, gen, -1.0, 1.0);
            const double tol = 2e-6 * static_cast<double>(K + 2);
            {
                const auto dx = cu::DeviceTensor<float>::from_host(x), dw = cu::DeviceTensor<float>::from_host(w);
                const auto db = cu::DeviceTensor<float>::from_host(bias);
                auto dy = cu::DeviceTensor<float>::empty({2, 7, N});
                cu::linear(dx, dw, db, dy);
                CHECK(max_abs_diff(to_double(dy.to_host()), linear(to_double(x), to_double(w), to_double(bias))) <= tol);
                cu::linear(dx, dw, cu::DeviceTensor<float>(), dy);
                CHECK(max_abs_diff(to_double(dy.to_host()), linear(to_double(x), to_double(w))) <= tol);
            }
            {  // bf16 storage: within twice the error of the CPU doing the same in bf16
                const auto xr = round_as(x, "bf16"), wr = round_as(w, "bf16"), br = round_as(bias, "bf16");
                const Tensor<double> exact = linear(to_double(xr), to_double(wr), to_double(br));
                const double cpu_err = max_abs_diff(to_double(exact.cast<float>().cast<bfloat16_t>().cast<float>()), exact);
                const auto dx = cu::DeviceTensor<bfloat16_t>::from_host(x);
                const auto dw = cu::DeviceTensor<bfloat16_t>::from_host(w);
                const auto db = cu::DeviceTensor<bfloat16_t>::from_host(bias);
                auto dy = cu::DeviceTensor<bfloat16_t>::empty({2, 7, N});
                cu::linear(dx, dw, db, dy, cu::GemmPrecision::bf16);
                CHECK(max_abs_diff(to_double(dy.to_host_float()), exact) <= 2.0 * cpu_err + tol);
            }
        }
    auto x = cu::DeviceTensor<float>::zeros({3, 5});
    auto w = cu::DeviceTensor<float>::zeros({4, 6});
    auto y = cu::DeviceTensor<float>::empty({3, 4});
    CHECK(contains(error_of([&] { cu::linear(x, w, cu::DeviceTensor<float>(), y); }), "has K = 5 but W is [4, 6]"));
    auto w2 = cu::DeviceTensor<float>::zeros({4, 5});
    auto b2 = cu::DeviceTensor<float>::zeros({5});
    CHECK(contains(error_of([&] { cu::linear(x, w2, b2, y); }), "bias is [5], expected [4]"));
}
