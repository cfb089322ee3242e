"""Paired statistics of a method against the plain student over seeds.

Seed ``k`` of the plain and of the distilled student share the data order
and initialisation seed, so their difference is the paired observation:
its mean is the gain, a paired t-test says whether it differs from zero,
and ``wins`` counts the seeds where distillation was better.
"""
import math
import statistics
from typing import Dict, Optional, Sequence


def paired_stats(diffs: Sequence[float]) -> Dict[str, Optional[float]]:
    """Mean, std, paired t, two-sided p and wins / ties / losses.

    Args:
        diffs (Sequence[float]): ``distilled - plain`` per seed.

    Returns:
        dict: ``n``, ``mean``, ``std`` (sample), ``sem``, ``t``, ``p``
        (two-sided, Student's t with ``n - 1`` degrees of freedom; None
        below 2 seeds or for zero spread), ``wins``, ``ties``, ``losses``.
    """
    n = len(diffs)
    out: Dict[str, Optional[float]] = dict(
        n=n,
        mean=statistics.fmean(diffs) if n else None,
        std=statistics.stdev(diffs) if n > 1 else None,
        sem=None,
        t=None,
        p=None,
        wins=sum(d > 0 for d in diffs),
        ties=sum(d == 0 for d in diffs),
        losses=sum(d < 0 for d in diffs))
    if n > 1 and out['std']:
        out['sem'] = out['std'] / math.sqrt(n)
        out['t'] = out['mean'] / out['sem']
        out['p'] = two_sided_p(out['t'], n - 1)
    return out


def two_sided_p(t: float, dof: int) -> float:
    """``P(|T| >= |t|)`` for Student's t with ``dof`` degrees of freedom.

    The regularised incomplete beta function ``I_x(dof/2, 1/2)`` with
    ``x = dof / (dof + t^2)``, by its continued fraction (no SciPy needed).
    """
    x = dof / (dof + t * t)
    return _betainc(dof / 2.0, 0.5, x)


def _betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta ``I_x(a, b)`` (Numerical Recipes)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    ln_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) +
        a * math.log(x) + b * math.log(1.0 - x))
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(ln_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(ln_front) * _betacf(b, a, 1.0 - x) / b


def _betacf(a: float, b: float, x: float, iters: int = 200) -> float:
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, iters + 1):
        m2 = 2 * m
        for num in (m * (b - m) * x / ((a + m2 - 1) * (a + m2)),
                    -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1))):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-12:
            break
    return h
