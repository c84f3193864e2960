// bench/cuda/attention_reference.hpp: attention_bench's fp64 CPU reference for coefficient
// attention on sampled query rows (no CUDA here, so tests/test_bench.cpp checks it against the
// CPU op's autograd). Layout: one batch item's q, k, v, dout as [H, N, d] row-major floats (the
// stored, rounded values), alpha [H, H] (row = target head), alpha' = I + alpha, no mask, no
// dropout, scale 1/sqrt(d).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace bench::attention_ref {

// The query rows the checks sample: up to 8 distinct rows of batch item 0.
inline std::vector<int64_t> sampled_rows(int64_t N) {
    std::vector<int64_t> rows;
    for (int64_t r = 0; r < 64 && static_cast<int64_t>(rows.size()) < std::min<int64_t>(8, N); ++r) {
        const int64_t n = (r * int64_t{2654435761} + 17) % N;
        if (std::find(rows.begin(), rows.end(), n) == rows.end()) rows.push_back(n);
    }
    return rows;
}

// The fp64 reference, from the stored inputs of one batch item, for the sampled query rows:
// out and dq at those rows (neither depends on dout outside its own row, so they hold for the
// timed problem), and dk, dv, dalpha in full for the problem whose dout is zero except at those
// rows of this item (then only those rows contribute; attention_bench uses them for item 0,
// where items 1 .. B-1 of dk and dv must then be zero).
struct Reference {
    std::vector<int64_t> rows;
    std::vector<double> out, dq;      // [rows][H][d]
    std::vector<double> dk, dv;       // [H][N][d], this item
    std::vector<double> dalpha;       // [H][H]
};

inline Reference reference(const std::vector<float>& q, const std::vector<float>& k, const std::vector<float>& v,
                    const std::vector<float>& dout, const std::vector<float>& alpha, int64_t H, int64_t N, int64_t d,
                    const std::vector<int64_t>& rows) {
    const double scale = 1.0 / std::sqrt(static_cast<double>(d));
    const int64_t M = N;
    auto at = [&](int64_t h, int64_t m, int64_t x) { return static_cast<size_t>((h * N + m) * d + x); };
    auto ap = [&](int64_t h, int64_t i) { return (h == i ? 1.0 : 0.0) + alpha[static_cast<size_t>(h * H + i)]; };
    Reference r;
    r.rows = rows;
    r.out.assign(rows.size() * static_cast<size_t>(H * d), 0.0);
    r.dq.assign(rows.size() * static_cast<size_t>(H * d), 0.0);
    r.dk.assign(static_cast<size_t>(H * N * d), 0.0);
    r.dv.assign(static_cast<size_t>(H * N * d), 0.0);
    r.dalpha.assign(static_cast<size_t>(H * H), 0.0);
    std::vector<double> P(static_cast<size_t>(H * M)), G(static_cast<size_t>(H * M)), dS(static_cast<size_t>(M));
    for (size_t ri = 0; ri < rows.size(); ++ri) {
        const int64_t n = rows[ri];
        double* out = &r.out[ri * static_cast<size_t>(H * d)];
        double* dq = &r.dq[ri * static_cast<size_t>(H * d)];
        for (int64_t i = 0; i < H; ++i) {
            double mx = -INFINITY;
            for (int64_t m = 0; m < M; ++m) {
                double s = 0, g = 0;
                for (int64_t x = 0; x < d; ++x) {
                    s += static_cast<double>(q[at(i, n, x)]) * k[at(i, m, x)];
                    g += static_cast<double>(dout[at(i, n, x)]) * v[at(i, m, x)];
                }
                P[i * M + m] = s * scale;
                G[i * M + m] = g;  // dPhat_i = dO_i V_i^T (head i as a target)
                mx = std::max(mx, P[i * M + m]);
            }
            double sum = 0;
            for (int64_t m = 0; m < M; ++m) sum += (P[i * M + m] = std::exp(P[i * M + m] - mx));
            for (int64_t m = 0; m < M; ++m) P[i * M + m] /= sum;
        }
        for (int64_t h = 0; h < H; ++h)
            for (int64_t m = 0; m < M; ++m) {
                double ph = 0;
                for (int64_t i = 0; i < H; ++i) ph += ap(h, i) * P[i * M + m];
                for (int64_t x = 0; x < d; ++x) {
                    out[h * d + x] += ph * v[at(h, m, x)];
                    r.dv[at(h, m, x)] += ph * dout[at(h, n, x)];
                }
            }
        for (int64_t h = 0; h < H; ++h)
            for (int64_t i = 0; i < H; ++i) {
                double s = 0;
                for (int64_t m = 0; m < M; ++m) s += G[h * M + m] * P[i * M + m];
                r.dalpha[static_cast<size_t>(h * H + i)] += s;  // no alpha dropout: dalpha = dalpha'
            }
        for (int64_t i = 0; i < H; ++i) {
            double D = 0;
            for (int64_t m = 0; m < M; ++m) {
                double s = 0;
                for (int64_t h = 0; h < H; ++h) s += ap(h, i) * G[h * M + m];
                dS[m] = s;  // dP
                D += s * P[i * M + m];
            }
            for (int64_t m = 0; m < M; ++m) {
                const double ds = scale * P[i * M + m] * (dS[m] - D);
                for (int64_t x = 0; x < d; ++x) {
                    dq[i * d + x] += ds * k[at(i, m, x)];
                    r.dk[at(i, m, x)] += ds * q[at(i, n, x)];
                }
            }
        }
    }
    return r;
}

}  // namespace bench::attention_ref
