"""Real orthonormal spherical harmonics in torch, as polynomials in x, y, z (smooth gradients everywhere)."""

from __future__ import annotations

import math

import torch


def real_spherical_harmonics(lmax: int, u: torch.Tensor) -> list[torch.Tensor]:
    """Real orthonormal spherical harmonics of unit vectors ``u`` (M, 3): a list over ℓ = 0..lmax of
    (M, 2ℓ+1) tensors, m = −ℓ..ℓ.

    Same convention as :func:`symprobe.so3.real_sph_harm`: Y_ℓ,m>0 = √2 N_ℓm P̄_ℓ^m(cos θ) cos mφ,
    Y_ℓ,m<0 = √2 N_ℓ|m| P̄_ℓ^|m|(cos θ) sin |m|φ, Y_ℓ0 = N_ℓ0 P_ℓ(cos θ), with P̄ the associated Legendre
    functions without the Condon–Shortley phase (so ℓ = 1 is √(3/4π) (y, z, x)). Written as polynomials
    in x, y, z, hence smooth everywhere (no pole singularity in the gradients).
    """
    x, y, z = u.unbind(-1)
    # (x + iy)^m = sin^m θ e^{imφ} for unit u
    re, im = [torch.ones_like(x)], [torch.zeros_like(x)]
    for m in range(1, lmax + 1):
        re_m, im_m = x * re[-1] - y * im[-1], x * im[-1] + y * re[-1]
        re.append(re_m)
        im.append(im_m)
    # Q[l][m] = P̄_ℓ^m(z) / sin^m θ, a polynomial in z
    Q = [[None] * (lmax + 1) for _ in range(lmax + 1)]
    for m in range(lmax + 1):
        Q[m][m] = torch.full_like(z, float(math.prod(range(1, 2 * m, 2))))
        if m + 1 <= lmax:
            Q[m + 1][m] = (2 * m + 1) * z * Q[m][m]
        for l in range(m + 2, lmax + 1):
            Q[l][m] = ((2 * l - 1) * z * Q[l - 1][m] - (l + m - 1) * Q[l - 2][m]) / (l - m)
    out = []
    for l in range(lmax + 1):
        columns = [None] * (2 * l + 1)
        for m in range(l + 1):
            norm = math.sqrt((2 * l + 1) / (4 * math.pi) * math.factorial(l - m) / math.factorial(l + m))
            if m == 0:
                columns[l] = norm * Q[l][0]
            else:
                columns[l + m] = math.sqrt(2.0) * norm * Q[l][m] * re[m]
                columns[l - m] = math.sqrt(2.0) * norm * Q[l][m] * im[m]
        out.append(torch.stack(columns, dim=-1))
    return out
