// Core: the counter-based RNG (known answers, stream layout), 16-bit storage types, vmath (the
// vectorised exp and normal cdf/pdf) and Device.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <sstream>
#include <string>

#include <coeffnet/coeffnet.hpp>

using namespace coeffnet;

TEST_CASE("philox4x32-10 matches Random123's known-answer vectors") {
    CHECK(philox4x32_10({0, 0, 0, 0}, {0, 0}) == Philox4{0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u});
    CHECK(philox4x32_10({0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}, {0xffffffffu, 0xffffffffu}) ==
          Philox4{0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu});
    CHECK(philox4x32_10({0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}, {0xa4093822u, 0x299f31d0u}) ==
          Philox4{0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u});
}

TEST_CASE("generator: a draw is a pure function of (seed, offset) and advances by ceil(n/4) blocks") {
    Generator g(42);
    const auto a = Tensor<float>::uniform({10}, g);  // 3 blocks
    CHECK(g.offset == 3);
    Generator h(42, 3);
    const auto b = Tensor<float>::uniform({5}, h);
    Generator g2(42);
    Tensor<float>::uniform({10}, g2);
    const auto c = Tensor<float>::uniform({5}, g2);
    CHECK(b.to_vector() == c.to_vector());
    // Element i uses word i % 4 of block i / 4.
    for (int64_t i = 0; i < 10; ++i)
        CHECK(a.to_vector()[static_cast<size_t>(i)] == uniform_from_bits(draw_bits(42, 0, static_cast<uint64_t>(i))));
    const auto av = a.to_vector();
    for (float v : av) CHECK((v >= 0.0f && v < 1.0f));
}

TEST_CASE("randn has the moments of a standard normal") {
    Generator g(7);
    const auto x = Tensor<double>::randn({200000}, g).to_vector();
    double m = 0, v = 0;
    for (double e : x) m += e;
    m /= static_cast<double>(x.size());
    for (double e : x) v += (e - m) * (e - m);
    v /= static_cast<double>(x.size());
    CHECK(std::abs(m) < 0.01);
    CHECK(std::abs(v - 1.0) < 0.02);
}

TEST_CASE("half and bfloat16 round to nearest even and keep specials") {
    CHECK(half_t(1.0f).bits == 0x3c00);
    CHECK(half_t(-2.0f).bits == 0xc000);
    CHECK(half_t(65504.0f).bits == 0x7bff);
    CHECK(half_t(65520.0f).bits == 0x7c00);        // ties to even past the largest finite: inf
    CHECK(half_t(5.960464477539063e-08f).bits == 0x0001);  // smallest subnormal
    CHECK(half_t(2.98023223876953125e-08f).bits == 0x0000);  // half of it: ties to even, 0
    CHECK(half_t(1.0009765625f).bits == 0x3c01);
    CHECK(half_t(1.00048828125f).bits == 0x3c00);  // exactly between 0x3c00 and 0x3c01: even
    CHECK(half_t::to_float(0x0001) == 5.960464477539063e-08f);
    CHECK(half_t::to_float(0x03ff) == 6.097555160522461e-05f);
    CHECK(std::isinf(static_cast<float>(half_t(std::numeric_limits<float>::infinity()))));
    CHECK(std::isnan(static_cast<float>(half_t(std::numeric_limits<float>::quiet_NaN()))));
    // Every finite half survives half -> float -> half.
    for (uint32_t b = 0; b < 0x10000; ++b) {
        if (((b >> 10) & 0x1f) == 0x1f) continue;
        const float f = half_t::to_float(static_cast<uint16_t>(b));
        if (half_t::from_float(f) != b) FAIL("half round trip failed for bits ", b);
    }
    CHECK(bfloat16_t(1.0f).bits == 0x3f80);
    CHECK(bfloat16_t(1.00390625f).bits == 0x3f80);   // tie: even
    CHECK(bfloat16_t(1.01171875f).bits == 0x3f82);   // tie: even (up)
    CHECK(static_cast<float>(bfloat16_t(3.140625f)) == 3.140625f);
    CHECK(std::isnan(static_cast<float>(bfloat16_t(std::numeric_limits<float>::quiet_NaN()))));
}

TEST_CASE("storage types convert through Tensor::cast") {
    const auto f = Tensor<float>::from({0.5f, -1.25f, 3.0f, 1e-3f}, {2, 2});
    const auto h = f.cast<half_t>();
    const auto b = f.cast<bfloat16_t>();
    const auto back = h.cast<float>().to_vector();
    CHECK(back[0] == 0.5f);
    CHECK(back[1] == -1.25f);
    CHECK(back[3] == doctest::Approx(1e-3f).epsilon(1e-3));
    CHECK(b.cast<double>().to_vector()[2] == 3.0);
    const auto i = Tensor<float>::from({1.9f, -2.5f}, {2}).cast<int64_t>().to_vector();
    CHECK(i == std::vector<int64_t>{1, -2});
}

TEST_CASE("errors are coeffnet::Error with the message built from parts") {
    try {
        fail("op: ", shape_str({2, 3}), " vs ", 4);
        FAIL("no throw");
    } catch (const Error& e) {
        CHECK(std::string(e.what()) == "op: [2, 3] vs 4");
    }
}

TEST_CASE("threads: COEFFNET_NUM_THREADS is read and checked, set_num_threads sets the count") {
    const char* before = std::getenv("COEFFNET_NUM_THREADS");
    const std::string saved = before ? before : "";
    ::setenv("COEFFNET_NUM_THREADS", "3", 1);
    CHECK(env_num_threads() == 3);
    ::setenv("COEFFNET_NUM_THREADS", "", 1);
    CHECK(env_num_threads() == 0);
    for (const char* bad : {"0", "two", "3x", "-1", "99999"}) {
        ::setenv("COEFFNET_NUM_THREADS", bad, 1);
        CHECK_THROWS_WITH_AS(env_num_threads(), doctest::Contains("COEFFNET_NUM_THREADS: expected a whole number"), Error);
    }
    if (before) ::setenv("COEFFNET_NUM_THREADS", saved.c_str(), 1);
    else ::unsetenv("COEFFNET_NUM_THREADS");
    const int had = num_threads();
    set_num_threads(1);
    CHECK(num_threads() == 1);
    set_num_threads(had);
    CHECK(num_threads() == had);
}

// ---- vmath: the vectorisable float exp and normal cdf/pdf (GELU, softmax) -----------------

namespace {

// The float ulp at |a| (the subnormal spacing below FLT_MIN).
long double ulp_at(long double a) {
    a = std::fabs(a);
    return a < std::numeric_limits<float>::min() ? std::ldexp(1.0L, -149)
                                                 : std::ldexp(1.0L, std::ilogb(static_cast<float>(a)) - 23);
}

// |got - ref| in float ulps at |ref|.
double ulps(float got, long double ref) {
    return static_cast<double>(std::fabs(static_cast<long double>(got) - ref) / ulp_at(ref));
}

}  // namespace

TEST_CASE("vmath::exp: within 2 ulp of e^x over float's whole range, subnormal results included") {
    double worst = 0;
    float at = 0;
    for (float x = -104.0f; x < 89.0f; x += 0.0009765625f * 3.1f) {  // ~62,000 points, all exponents
        const double u = ulps(vmath::exp(x), std::exp(static_cast<long double>(x)));
        if (u > worst) worst = u, at = x;
    }
    CHECK_MESSAGE(worst <= 2.0, "worst at x = " << at);
    for (float x = -1.0f; x < 1.0f; x = std::nextafter(x, 2.0f) + 1e-5f)  // dense near 0, where n = 0
        CHECK(ulps(vmath::exp(x), std::exp(static_cast<long double>(x))) <= 2.0);
    CHECK(vmath::exp(0.0f) == 1.0f);
    CHECK(vmath::exp(-std::numeric_limits<float>::infinity()) == 0.0f);  // softmax's masked entries
    CHECK(vmath::exp(-200.0f) == 0.0f);
    CHECK(std::isinf(vmath::exp(std::numeric_limits<float>::infinity())));
    CHECK(std::isinf(vmath::exp(89.0f)));
    CHECK(std::isnan(vmath::exp(std::numeric_limits<float>::quiet_NaN())));
    CHECK(vmath::exp(1.0) == std::exp(1.0));  // double is libm's
}

TEST_CASE("vmath::normal_cdf_pdf: Phi, phi, GELU and GELU' within a few float ulp, the left tail included") {
    // The reference: Phi(x) = erfc(-x / sqrt 2) / 2, phi(x) = exp(-x^2 / 2) / sqrt(2 pi) in long double.
    double worst_cdf = 0, worst_pdf = 0, worst_gelu = 0, worst_dgelu = 0;
    for (float x = -16.0f; x < 16.0f; x += 1.7e-5f) {
        const long double xl = x;
        const long double cdf = 0.5L * std::erfc(-xl * 0.70710678118654752440084436L);
        const long double pdf = 0.39894228040143267793994606L * std::exp(-0.5L * xl * xl);
        float c, p;
        vmath::normal_cdf_pdf(x, c, p);
        worst_cdf = std::max(worst_cdf, ulps(c, cdf));
        worst_pdf = std::max(worst_pdf, ulps(p, pdf));
        worst_gelu = std::max(worst_gelu, ulps(x * c, xl * cdf));
        // GELU' = Phi + x phi cancels near x = -0.75: measured against the larger term's ulp.
        const long double big = std::max(std::fabs(cdf), std::fabs(xl * pdf));
        worst_dgelu = std::max(worst_dgelu, static_cast<double>(std::fabs((c + x * p) - (cdf + xl * pdf)) / ulp_at(big)));
    }
    CHECK(worst_cdf <= 10.0);  // measured 8.4 (Horner near t = 1), libm's 0.5 (1 + erf): 1.7e7 in the tail
    CHECK(worst_pdf <= 4.0);
    CHECK(worst_gelu <= 12.0);
    CHECK(worst_dgelu <= 14.0);
    float c, p;
    vmath::normal_cdf_pdf(-40.0f, c, p);
    CHECK((c == 0.0f && p == 0.0f));
    vmath::normal_cdf_pdf(40.0f, c, p);
    CHECK((c == 1.0f && p == 0.0f));
    vmath::normal_cdf_pdf(std::numeric_limits<float>::quiet_NaN(), c, p);
    CHECK((std::isnan(c) && std::isnan(p)));
}

// ---- Device ---------------------------------------------------------------------------------

TEST_CASE("Device: cpu, cuda:N and emu, parsed from and printed as the command line writes them") {
    CHECK(Device::parse("cpu") == Device::cpu());
    CHECK(Device::parse("cuda") == Device::cuda(0));
    CHECK(Device::parse("cuda:0") == Device::cuda());
    CHECK(Device::parse("cuda:3") == Device::cuda(3));
    CHECK(Device::parse("emu") == Device::emulated());
    CHECK(Device::cuda(1) != Device::cuda(2));
    CHECK(Device::cuda(0) != Device::emulated());
    CHECK(Device{} == Device::cpu());
    for (const Device d : {Device::cpu(), Device::cuda(0), Device::cuda(7), Device::emulated()})
        CHECK(Device::parse(d.str()) == d);
    CHECK(Device::cuda(2).str() == "cuda:2");
    std::ostringstream os;
    os << Device::emulated();
    CHECK(os.str() == "emu");
    CHECK((Device::cpu().is_cpu() && Device::cuda(1).is_cuda() && Device::emulated().is_emulated()));
}

TEST_CASE("Device::parse refuses anything else, quoting it and listing the forms") {
    const std::string forms = "(expected cpu, cuda, cuda:N with N a GPU number, or emu)";
    for (const char* s : {"", "gpu", "CPU", "cuda0", "emu:0", " cpu", "cpu "})
        CHECK_THROWS_WITH(Device::parse(s), ("device '" + std::string(s) + "': unknown device " + forms).c_str());
    for (const char* s : {"cuda:", "cuda:-1", "cuda:x", "cuda:1x", "cuda:1024", "cuda:99999999999"})
        CHECK_THROWS_WITH(Device::parse(s), ("device '" + std::string(s) +
                                             "': the GPU number must be a whole number from 0 to 1023 " + forms)
                                                .c_str());
}
