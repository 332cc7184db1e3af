"""x / eps / v conversions for the variance-preserving process (HFD Sec. 3.1).

With ``z = alpha x + sigma eps`` and ``alpha^2 + sigma^2 = 1`` the
v-parameterization of Salimans & Ho 2022 (Eq. 4 and App. D) is
``v = alpha eps - sigma x``; then ``x = alpha z - sigma v`` and
``eps = sigma z + alpha v``. Pure functions; arguments broadcast.
"""

from __future__ import annotations


def diffuse(x, eps, alpha, sigma):
    """Forward process sample ``z_t = alpha_t x + sigma_t eps`` (VDM Eq. 1)."""
    return alpha * x + sigma * eps


def v_from_x_eps(x, eps, alpha, sigma):
    """``v = alpha eps - sigma x`` (Salimans & Ho 2022, Sec. 4)."""
    return alpha * eps - sigma * x


def v_from_z_x(z, x, alpha, sigma):
    """``v = (alpha z - x) / sigma``: the v that maps ``z`` back to ``x``."""
    return (alpha * z - x) / sigma


def predict_x_from_v(z, v, alpha, sigma):
    """``x = alpha z - sigma v``."""
    return alpha * z - sigma * v


def predict_eps_from_v(z, v, alpha, sigma):
    """``eps = sigma z + alpha v``."""
    return sigma * z + alpha * v


def predict_x_from_eps(z, eps, alpha, sigma):
    """``x = (z - sigma eps) / alpha`` (Ho et al. 2020, Eq. 15)."""
    return (z - sigma * eps) / alpha


def predict_eps_from_x(z, x, alpha, sigma):
    """``eps = (z - alpha x) / sigma``."""
    return (z - alpha * x) / sigma


def flow_interpolate(z0, x, t):
    """Rectified-flow path ``z_t = (1 - t) z_0 + t x`` (Liu et al. 2022, Eq. 1)."""
    return (1.0 - t) * z0 + t * x


def flow_velocity(z0, x):
    """Velocity of the straight path: ``dz_t / dt = x - z_0``."""
    return x - z0
