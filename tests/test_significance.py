"""Paired bootstrap intervals of a lift and the thin-evidence warning (recinc_cli.evaluation.significance)."""

from __future__ import annotations

import numpy as np
import pytest

from recinc_cli.evaluation.significance import MIN_USERS, lift_evidence, thin_warning


def test_the_interval_holds_the_true_difference_and_excludes_zero() -> None:
    rng = np.random.default_rng(1)
    base = rng.random(2000)
    model = base + 0.05 + rng.normal(0, 0.2, 2000)  # the true lift is 0.05
    e = lift_evidence(model, base)
    assert set(e) == {"units", "unit", "level", "difference", "interval"}
    assert (e["units"], e["unit"], e["level"]) == (2000, "users", 0.95)
    assert e["difference"] == pytest.approx(float(np.mean(model - base)))
    lo, hi = e["interval"]
    assert 0 < lo < 0.05 < hi
    # About the normal-theory interval: +-1.96 standard errors of the mean difference.
    se = np.std(model - base) / np.sqrt(2000)
    assert hi - lo == pytest.approx(2 * 1.96 * se, rel=0.1)
    assert thin_warning(e) is None
    # A lower level gives a narrower interval around the same difference.
    narrow = lift_evidence(model, base, level=0.5)
    assert lo < narrow["interval"][0] < narrow["interval"][1] < hi and narrow["level"] == 0.5


def test_a_lift_within_the_noise_is_warned_about_with_its_interval() -> None:
    rng = np.random.default_rng(2)
    base = rng.random(500)
    model = base + rng.normal(0, 0.3, 500)  # no true lift
    e = lift_evidence(model, base)
    lo, hi = e["interval"]
    assert lo < 0 < hi
    assert thin_warning(e) == (
        f"the lift over popularity ({e['difference']:+.4f}) is within the noise: its 95% interval over "
        f"500 users is {lo:+.4f} .. {hi:+.4f}"
    )
    # The same wording for sessions, with thousands separated.
    big = lift_evidence(np.r_[model, model, model], np.r_[base, base, base], unit="sessions")
    assert thin_warning(big) == (
        "the lift over popularity (-0.0004) is within the noise: its 95% interval over 1,500 sessions "
        "is -0.0165 .. +0.0140"
    )


def test_few_units_are_warned_about_whatever_the_interval() -> None:
    assert MIN_USERS == 100
    strong = lift_evidence(np.ones(99), np.zeros(99))
    assert strong["interval"] == [1.0, 1.0]
    assert thin_warning(strong) == "only 99 users scored (under 100): these figures say little"
    assert thin_warning(lift_evidence(np.ones(100), np.zeros(100))) is None
    one = lift_evidence(np.ones(1), np.zeros(1), unit="sessions")
    assert thin_warning(one) == "only 1 session scored (under 100): these figures say little"
    assert (
        thin_warning(lift_evidence(np.ones(1), np.zeros(1)))
        == "only 1 user scored (under 100): these figures say little"
    )
    assert thin_warning(strong, min_units=50) is None


def test_nothing_scored() -> None:
    e = lift_evidence(np.zeros(0), np.zeros(0))
    assert e == {"units": 0, "unit": "users", "level": 0.95, "difference": 0.0, "interval": [0.0, 0.0]}
    assert thin_warning(e) == "only 0 users scored (under 100): these figures say little"
    e = lift_evidence(np.zeros(3), np.zeros(3), counts=np.zeros(3))
    assert (e["difference"], e["interval"]) == (0.0, [0.0, 0.0])


def test_counts_form_pools_the_sums_of_each_session() -> None:
    # Per-session sums of a metric over 2, 1 and 1 clicks: the mean over the 4 clicks.
    e = lift_evidence(np.array([2.0, 0.0, 1.0]), np.array([1.0, 0.0, 0.0]), counts=np.array([2, 1, 1]), unit="sessions")
    assert e["difference"] == pytest.approx((1 + 0 + 1) / 4)
    assert e["units"] == 3 and e["unit"] == "sessions"
    # Resampling whole sessions: a resample of session 2 alone gives 0, of session 1 or 3 alone 0.5 or 1.
    lo, hi = e["interval"]
    assert 0.0 <= lo <= e["difference"] <= hi <= 1.0
    # With one click per session it is the plain per-unit form, draw for draw.
    rng = np.random.default_rng(3)
    a, b = rng.random(300), rng.random(300)
    assert lift_evidence(a, b, counts=np.ones(300)) == lift_evidence(a, b)


def test_sessions_are_resampled_whole() -> None:
    """50 sessions of 10 clicks whose clicks agree within a session: the evidence is 50 units,
    not 500, so the interval is about sqrt(10) times wider than if the clicks were resampled."""
    rng = np.random.default_rng(4)
    per_session = rng.normal(0.1, 0.5, 50)
    clicks = np.repeat(per_session, 10)
    clustered = lift_evidence(per_session * 10, np.zeros(50), counts=np.full(50, 10), unit="sessions")
    naive = lift_evidence(clicks, np.zeros(500))
    assert clustered["difference"] == pytest.approx(naive["difference"])
    width = lambda e: e["interval"][1] - e["interval"][0]  # noqa: E731
    assert width(clustered) / width(naive) == pytest.approx(np.sqrt(10), rel=0.2)


def test_the_same_seed_gives_the_same_interval() -> None:
    rng = np.random.default_rng(5)
    a, b = rng.random(200), rng.random(200)
    assert lift_evidence(a, b) == lift_evidence(a, b) == lift_evidence(a, b, seed=0)
    other = lift_evidence(a, b, seed=1)
    assert other["difference"] == lift_evidence(a, b)["difference"]
    assert other["interval"] != lift_evidence(a, b)["interval"]
    # The global numpy state plays no part.
    np.random.seed(123)
    first = lift_evidence(a, b)
    np.random.seed(456)
    assert lift_evidence(a, b) == first
