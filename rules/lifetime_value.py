"""Customer lifetime value: BG/NBD (purchases, dropout) and Gamma-Gamma (spend) fitted by MLE.

BG/NBD: Fader, Hardie & Lee (2005), "Counting your customers the easy way". Gamma-Gamma: Fader,
Hardie & Lee (2005), "RFM and CLV", and Fader & Hardie's note "The Gamma-Gamma model of monetary
value". Per customer: x repeat purchases (purchase days after the first), t_x the time of the
last one and T the time of the end of calibration, both measured from the first purchase, in
weeks; `spend` is the mean amount of the repeat purchases.

Everything is pure: summaries come from (customer, date, amount) triples and a calibration end
given as arguments; the shell reads files and writes the model.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date

import numpy as np

from models.errors import ModelFitError

# scipy is imported in the functions that use it: it takes most of a second to import, and
# only model fits and the model metrics need it, not every command and worker.

DAYS_PER_UNIT = 7.0  # time unit: weeks, as in the published CDNOW analyses


@dataclass(frozen=True)
class CustomerSummary:
    """One customer's calibration-period RFM summary."""

    customer_id: str
    x: int          # repeat purchases: distinct purchase days after the first
    t_x: float      # weeks from the first purchase to the last
    T: float        # weeks from the first purchase to the end of calibration
    spend: float    # mean amount per repeat purchase day (0.0 without repeats)


@dataclass(frozen=True)
class BgNbd:
    r: float
    alpha: float
    a: float
    b: float


@dataclass(frozen=True)
class GammaGamma:
    p: float
    q: float
    v: float


@dataclass(frozen=True)
class Model:
    """A fitted model as a policy uses it: both parameter sets and the currency of the spends."""

    bgnbd: BgNbd
    gamma_gamma: GammaGamma
    currency: str
    calibration: tuple[str, str] = ("", "")  # first and last day of the data it was fitted on


@dataclass(frozen=True)
class Fit:
    """A fitted model with what it was fitted on."""

    params: BgNbd | GammaGamma
    customers: int
    log_likelihood: float
    excluded: int = 0  # customers left out (Gamma-Gamma: no repeat purchase or no spend)


# --- summaries ---------------------------------------------------------------------------------

def summarize(purchases: Iterable[tuple[str, date, float]], calibration_end: date
              ) -> list[CustomerSummary]:
    """RFM summaries of every customer whose first purchase is on or before `calibration_end`.

    Purchases after the end are ignored; purchases of one customer on one day are one purchase
    (their amounts add up), the CDNOW convention.
    """
    days: dict[str, dict[date, float]] = defaultdict(lambda: defaultdict(float))
    for customer, day, amount in purchases:
        if day <= calibration_end:
            days[customer][day] += amount
    return [customer_summary(customer, by_day, calibration_end)
            for customer, by_day in days.items()]


def customer_summary(customer: str, by_day: dict[date, float], end: date) -> CustomerSummary:
    """One customer's summary from the amount bought on each purchase day, up to day `end`."""
    ordered = sorted(by_day)
    first, last = ordered[0], ordered[-1]
    repeats = [by_day[d] for d in ordered[1:]]
    return CustomerSummary(customer, x=len(repeats),
                           t_x=(last - first).days / DAYS_PER_UNIT,
                           T=(end - first).days / DAYS_PER_UNIT,
                           spend=sum(repeats) / len(repeats) if repeats else 0.0)


def arrays(summaries: Iterable[CustomerSummary]) -> tuple[np.ndarray, ...]:
    """x, t_x, T and spend as float arrays."""
    rows = [(s.x, s.t_x, s.T, s.spend) for s in summaries]
    data = np.array(rows, dtype=float).reshape(-1, 4)
    return data[:, 0], data[:, 1], data[:, 2], data[:, 3]


# --- BG/NBD ------------------------------------------------------------------------------------

def bgnbd_log_likelihood(params: BgNbd, x: np.ndarray, t_x: np.ndarray, T: np.ndarray
                         ) -> np.ndarray:
    """Per-customer log-likelihood, in log space throughout so large x or T cannot overflow."""
    from scipy.special import gammaln

    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    x, t_x, T = (np.asarray(v, dtype=float) for v in (x, t_x, T))
    a1 = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
    a2 = gammaln(a + b) + gammaln(b + x) - gammaln(b) - gammaln(a + b + x)
    a3 = -(r + x) * np.log(alpha + T)
    repeat = x > 0
    a4 = np.full_like(x, -np.inf)
    a4[repeat] = (np.log(a) - np.log(b + x[repeat] - 1)
                  - (r + x[repeat]) * np.log(alpha + t_x[repeat]))
    return a1 + a2 + np.logaddexp(a3, a4)


def fit_bgnbd(x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> Fit:
    """Maximum-likelihood BG/NBD parameters."""
    _check_summary(x, t_x, T)
    (x, t_x, T), weights = _distinct_rows(x, t_x, T)
    unit = max(float(np.mean(T)), 1e-9)  # fit in units of the mean age: alpha near 1, not 1e4

    def loss(log_params: np.ndarray) -> float:
        ll = bgnbd_log_likelihood(BgNbd(*np.exp(log_params)), x, t_x / unit, T / unit)
        return -float(np.dot(weights, ll)) / weights.sum()

    r, alpha, a, b = _minimize(loss, np.zeros(4), "BG/NBD")
    params = BgNbd(r, alpha * unit, a, b)
    ll = float(np.dot(weights, bgnbd_log_likelihood(params, x, t_x, T)))
    return Fit(params, int(weights.sum()), ll)


def p_alive(params: BgNbd, x, t_x, T) -> np.ndarray:
    """Probability that the customer has not dropped out by T; 1 without repeat purchases."""
    from scipy.special import expit

    x, t_x, T = (np.asarray(v, dtype=float) for v in (x, t_x, T))
    return np.where(x > 0, expit(-_log_odds_dead(params, x, t_x, T)), 1.0)


def _log_odds_dead(params: BgNbd, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    with np.errstate(divide="ignore", invalid="ignore"):
        return (np.log(a) - np.log(np.maximum(b + x - 1, 1e-300))
                + (r + x) * (np.log(alpha + T) - np.log(alpha + t_x)))


def expected_purchases(params: BgNbd, t, x, t_x, T) -> np.ndarray:
    """Expected purchases in (T, T + t] given (x, t_x, T): FHL 2005 equation (10).

    The Gauss hypergeometric term is evaluated after Euler's transformation,
    ((alpha+T)/(alpha+T+t))^(r+x) 2F1(r+x, b+x; a+b+x-1; z) = (1-z)^(a-1) 2F1(a+b-1-r, a-1;
    a+b+x-1; z) with z = t/(alpha+T+t), whose parameters do not grow with x and so stay finite
    where the textbook form overflows. Should it still fail, the customer gets the upper bound
    p_alive * t * (r+x)/(alpha+T): the purchase rate of an alive customer, ignoring dropout.
    """
    from scipy.special import hyp2f1

    r, alpha, b = params.r, params.alpha, params.b
    a = params.a if abs(params.a - 1.0) > 1e-9 else 1.0 + 1e-9  # (a-1) divides below
    t, x, t_x, T = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in (t, x, t_x, T)))
    z = t / (alpha + T + t)
    with np.errstate(all="ignore"):
        tail = (1 - z) ** (a - 1) * hyp2f1(a + b - 1 - r, a - 1, a + b + x - 1, z)
        expected = (a + b + x - 1) / (a - 1) * (1 - tail) * p_alive(params, x, t_x, T)
        bound = p_alive(params, x, t_x, T) * t * (r + x) / (alpha + T)
    good = np.isfinite(expected) & (expected >= 0) & (expected <= bound * (1 + 1e-9))
    return np.where(good, expected, bound)


# --- Gamma-Gamma -------------------------------------------------------------------------------

def gamma_gamma_log_likelihood(params: GammaGamma, x: np.ndarray, spend: np.ndarray
                               ) -> np.ndarray:
    """Per-customer log-likelihood of the mean spend `spend` over x > 0 transactions."""
    from scipy.special import gammaln

    p, q, v = params.p, params.q, params.v
    px = p * x
    return (gammaln(px + q) - gammaln(px) - gammaln(q) + q * np.log(v)
            + (px - 1) * np.log(spend) + px * np.log(x) - (px + q) * np.log(x * spend + v))


def fit_gamma_gamma(x: np.ndarray, spend: np.ndarray) -> Fit:
    """Maximum-likelihood Gamma-Gamma parameters, from repeat customers with positive spend.

    Customers without a repeat purchase carry no spend information (the model describes repeat
    transactions) and a zero spend has no likelihood under a gamma; both are left out and
    counted in `Fit.excluded`.
    """
    x, spend = np.asarray(x, dtype=float), np.asarray(spend, dtype=float)
    usable = (x > 0) & (spend > 0) & np.isfinite(spend)
    if usable.sum() < 3:
        raise ModelFitError(f"Gamma-Gamma needs customers with repeat purchases and a positive "
                            f"spend; only {int(usable.sum())} of {len(x)} have them")
    (xs, ms), weights = _distinct_rows(x[usable], spend[usable])
    unit = float(np.mean(ms))  # fit in units of the mean spend: v is then currency-free

    def loss(log_params: np.ndarray) -> float:
        ll = gamma_gamma_log_likelihood(GammaGamma(*np.exp(log_params)), xs, ms / unit)
        return -float(np.dot(weights, ll)) / weights.sum()

    p, q, v = _minimize(loss, np.zeros(3), "Gamma-Gamma")
    params = GammaGamma(p, q, v * unit)
    ll = float(np.dot(weights, gamma_gamma_log_likelihood(params, xs, ms)))
    return Fit(params, int(usable.sum()), ll, excluded=int((~usable).sum()))


def expected_spend(params: GammaGamma, x, spend) -> np.ndarray:
    """Expected mean spend per future transaction given x repeat purchases of mean `spend`.

    Needs q > 1 (the population mean p*v/(q-1) exists); a customer with x = 0 gets that mean.
    """
    p, q, v = params.p, params.q, params.v
    if q <= 1:
        raise ModelFitError(f"Gamma-Gamma q = {q:.4g} <= 1: the expected spend is unbounded")
    x, spend = np.asarray(x, dtype=float), np.asarray(spend, dtype=float)
    return p * (v + x * spend) / (p * x + q - 1)


def clv(bgnbd: BgNbd, gg: GammaGamma, t: float, x, t_x, T, spend,
        discount: float = 0.0) -> np.ndarray:
    """Expected revenue in the next t weeks: expected purchases times expected spend.

    With `discount` > 0 (a rate per week), the purchases expected in each week k = 1..ceil(t)
    are discounted by (1 + discount)^-k before they are added up.
    """
    if t <= 0:
        return np.zeros(np.broadcast(np.asarray(x), np.asarray(T)).shape)
    per_purchase = expected_spend(gg, x, spend)
    if discount == 0:
        return expected_purchases(bgnbd, t, x, t_x, T) * per_purchase
    ends = np.minimum(np.arange(1, math.ceil(t) + 1, dtype=float), t)
    total, before = 0.0, 0.0
    for k, end in enumerate(ends, start=1):
        cumulative = expected_purchases(bgnbd, end, x, t_x, T)
        total = total + (cumulative - before) / (1 + discount) ** k
        before = cumulative
    return total * per_purchase


# --- fitting helpers ---------------------------------------------------------------------------

def _check_summary(x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> None:
    if len(x) == 0:
        raise ModelFitError("no customers to fit the model on")
    x, t_x, T = (np.asarray(v, dtype=float) for v in (x, t_x, T))
    bad = (x < 0) | (t_x < 0) | (t_x > T) | ~np.isfinite(x + t_x + T) | ((x > 0) & (t_x <= 0))
    if bad.any():
        i = int(np.argmax(bad))
        raise ModelFitError(f"customer {i}: need x >= 0 and 0 <= t_x <= T, with t_x > 0 when "
                            f"x > 0; got x={x[i]}, t_x={t_x[i]}, T={T[i]}")


def _distinct_rows(*columns: np.ndarray) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
    """Distinct rows and how often each occurs: customers with equal summaries count once."""
    stacked = np.column_stack([np.asarray(c, dtype=float) for c in columns])
    rows, counts = np.unique(stacked, axis=0, return_counts=True)
    return tuple(rows.T), counts.astype(float)


def _minimize(loss: Callable[[np.ndarray], float], start: np.ndarray, model: str) -> np.ndarray:
    from scipy.optimize import minimize

    result = minimize(loss, start, method="Nelder-Mead",
                      options={"xatol": 1e-8, "fatol": 1e-12, "maxiter": 4000})
    if not result.success or not np.isfinite(result.fun):
        raise ModelFitError(f"{model} fit did not converge: {result.message} "
                            f"(at {np.round(np.exp(result.x), 4).tolist()})")
    params = np.exp(result.x)
    # On the scaled data a parameter beyond 1e6 or below 1e-6 means the likelihood has no
    # interior maximum (e.g. nobody drops out, or every customer spends alike)
    if np.any(np.abs(result.x) > np.log(1e6)):
        raise ModelFitError(f"{model} fit ran off to degenerate parameters "
                            f"{np.round(params, 6).tolist()}: too few customers, or too alike "
                            "(no dropout, no spread in spend) for this model")
    return params
