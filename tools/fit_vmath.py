#!/usr/bin/env python3
"""tools/fit_vmath.py: finds the polynomial constants of include/coeffnet/core/vmath.hpp and
measures their error, in exact (double) arithmetic and evaluated in float32 as the C++ does.

    python3 tools/fit_vmath.py        (needs numpy; prints the constants as C++ literals)

Both fits minimise the largest relative error by iteratively reweighted least squares on a
dense grid (a simple stand-in for a Remez exchange):
  exp:  e^r ~ p(r) on r in [-ln2/2, ln2/2], p of degree 6;
  erfc: R(z) = exp(z^2) erfc(z) ~ t P(t) with t = 1 / (1 + 0.3 z), z in [0, 10], P of degree 8.
The reference values come from Python's math.exp and math.erfc (double precision).
"""
import math

import numpy as np


def minimax(x, ref, basis, iters=40):
    w = np.ones_like(x)
    for _ in range(iters):
        c, *_ = np.linalg.lstsq(basis * (w / ref)[:, None], w, rcond=None)
        err = (basis @ c - ref) / ref
        w = w * (1 + 50 * np.abs(err) / np.abs(err).max())
        w /= w.mean()
    return c, np.abs(err).max()


def horner32(c32, x32):
    acc = np.full_like(x32, c32[-1])
    for cc in c32[-2::-1]:
        acc = (acc * x32 + cc).astype(np.float32)
    return acc


def literals(c):
    return ", ".join("%.9ef" % v for v in np.float32(c)[::-1])  # highest degree first (Horner)


h = math.log(2) / 2
r = np.linspace(-h, h, 40001)
c_exp, _ = minimax(r, np.exp(r), np.vander(r, 7, increasing=True))
c_exp[0] = 1.0  # p(0) = 1 exactly: exp(0) = 1
e_exp = np.abs(np.vander(r, 7, increasing=True) @ c_exp / np.exp(r) - 1).max()
e_exp32 = np.abs(horner32(np.float32(c_exp), r.astype(np.float32)) / np.exp(r) - 1).max()
print("exp, degree 6, highest first:", literals(c_exp))
print("  relative error: %.2e exact, %.2e in float32" % (e_exp, e_exp32))

z = np.linspace(0, 10, 40001)
ref = np.array([math.exp(v * v) * math.erfc(v) for v in z])
t = 1 / (1 + 0.3 * z)
c_erfc, e_erfc = minimax(t, ref, np.vander(t, 9, increasing=True) * t[:, None])
t32 = (np.float32(1) / (np.float32(1) + np.float32(0.3) * z.astype(np.float32))).astype(np.float32)
e_erfc32 = np.abs(horner32(np.float32(c_erfc), t32) * t32 / ref - 1).max()
print("erfc's R = t P(t), degree 8, highest first:", literals(c_erfc))
print("  relative error: %.2e exact, %.2e in float32" % (e_erfc, e_erfc32))
