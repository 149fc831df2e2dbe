"""Generate the synthetic e-commerce event log shipped in ``sample_data/``.

recinc trains recommendation models on an event log and then keeps them fresh
with incremental (day-by-day) updates. To demo and test that workflow we need
a small, *reproducible* event log whose statistical structure makes the
comparison between models meaningful, without shipping any real user data:

* a view -> cart -> purchase funnel (roughly 82% / 12% / 5% of events); a cart
  follows a view of the same item shortly before, a purchase mostly follows a
  cart;
* Zipf-like item popularity inside each of 12 categories, drifting over the
  14 days (some items trend up, some fade), plus new items launching every
  day, some of which become popular at once;
* users with taste clusters (1-2 preferred categories get ~85% of their
  sessions) and a personal latent affinity for items *within* a category, so
  a personalised model (e.g. matrix factorisation) clearly beats global
  most-popular at predicting which *new* items a returning user touches on the
  next day, while popularity stays a meaningful baseline;
* users coming back over several days (with the odd repeat view of an item),
  and ~5-10% brand-new users on every later day;
* a few dirty rows (empty ids, unparsable timestamps, exact duplicates) spread
  over the files, so the cleaning step has something to do.

Output, columns ``user_id,item_id,event_type,timestamp,category``:

* ``base.csv``: days 1-10 (2026-03-01 .. 2026-03-10, UTC);
* ``day11.csv`` .. ``day14.csv``: one file per later day;
* ``sessions.csv`` and ``live_session.csv``: a separate log of anonymous click sessions
  (``session_id,item_id,timestamp``), from ``generate_sessions.py``, which says how it is built.

Rows are in time order within a file, except the dirty rows. Only the standard
library and numpy are used, and the output is byte-for-byte identical for a
given seed::

    python sample_data/generate.py [--out-dir sample_data] [--seed 42]
"""

from __future__ import annotations

import argparse
import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from generate_sessions import generate_sessions
from numpy.typing import NDArray

Int = NDArray[np.int64]
Float = NDArray[np.float64]

# --- Shape of the world ------------------------------------------------------
START = np.datetime64("2026-03-01T00:00:00", "s")
N_DAYS = 14
BASE_DAYS = 10  # days 1-10 go to base.csv, every later day to its own file
SECONDS_PER_DAY = 86_400
N_CATEGORIES = 12
N_INITIAL_ITEMS = 700
NEW_ITEMS_PER_DAY = 8  # launched on each of days 2-14 -> ~800 items in all
N_USERS = 1500
NEW_USERS_PER_LATE_DAY = 35  # users whose first visit falls on day 11, 12, 13, 14
LATENT_DIM = 8

# --- Behaviour knobs -----------------------------------------------------------
ZIPF_EXPONENT = 1.1  # within-category popularity ~ 1 / rank**a
HIT_LAUNCH_SHARE = 0.35  # share of launched items that enter near the top of their category
AFFINITY_STRENGTH = 1.0  # weight of the user.item latent dot product (~N(0, 1))
PREFERRED_SHARE = 0.85  # share of a user's sessions spent in their preferred categories
EXTRA_SESSIONS_PER_DAY = 0.35  # Poisson mean of sessions beyond the first on an active day
SESSION_STOP_PROB = 0.37  # geometric: fresh items browsed per session, mean ~2.7
REVISIT_PROB = 0.12  # a session also re-opens an item from the user's history
REPEAT_VIEW_PROB = 0.08  # an item is viewed again at the end of the same session
CART_PROB = 0.15  # view -> cart
PURCHASE_PROB = 0.40  # cart -> purchase
DIRECT_PURCHASE_PROB = 0.006  # view -> purchase without a cart ("buy now"), rare

VIEW, CART, PURCHASE = 0, 1, 2
EVENT_NAMES = ("view", "cart", "purchase")
HEADER = ("user_id", "item_id", "event_type", "timestamp", "category")

# Traffic by hour of day (UTC): quiet nights, a lunch bump and an evening peak.
HOUR_WEIGHTS = np.array([2, 1, 1, 1, 1, 2, 3, 5, 6, 6, 6, 7, 8, 7, 6, 6, 7, 8, 10, 12, 12, 10, 7, 4], dtype=float)
HOUR_WEIGHTS /= HOUR_WEIGHTS.sum()

# Dirty rows per file: (empty user_id, empty item_id, bad timestamp, exact duplicate).
DIRTY_PLAN: dict[str, tuple[int, int, int, int]] = {
    "base": (3, 1, 1, 3),
    "day11": (1, 1, 1, 2),
    "day12": (1, 0, 1, 2),
    "day13": (1, 1, 1, 2),
    "day14": (1, 0, 1, 2),
}
BAD_TIMESTAMPS = (
    "not-a-time",
    "2026-13-45T99:00:00Z",
    "2026-02-30T10:00:00Z",
    "2026-03-12T25:61:00Z",
    "yesterday",
)


@dataclass(frozen=True)
class Catalogue:
    """Items: category, launch day, daily popularity and latent taste vector."""

    category: Int  # (n_items,) category index
    log_pop: Float  # (N_DAYS, n_items) within-category log popularity, -inf before launch
    factors: Float  # (n_items, LATENT_DIM)
    by_category: list[Int]  # item indices of each category
    cat_share: Float  # (N_CATEGORIES,) how much traffic each category draws


@dataclass(frozen=True)
class Population:
    """Users: when they show up, on which days they are active, and their tastes."""

    active: NDArray[np.bool_]  # (n_users, N_DAYS)
    cat_pref: Float  # (n_users, N_CATEGORIES) probability of a session's category
    factors: Float  # (n_users, LATENT_DIM)


def make_catalogue(rng: np.random.Generator) -> Catalogue:
    # Categories differ in traffic; bigger categories also hold more items.
    cat_share = rng.dirichlet(np.full(N_CATEGORIES, 4.0))
    launch = np.concatenate(
        [
            np.zeros(N_INITIAL_ITEMS, dtype=np.int64),
            np.repeat(np.arange(1, N_DAYS, dtype=np.int64), NEW_ITEMS_PER_DAY),
        ]
    )
    n_items = launch.size
    category = rng.choice(N_CATEGORIES, size=n_items, p=0.5 * cat_share + 0.5 / N_CATEGORIES)

    # Zipf-like popularity: a random rank order inside every category.
    base = np.empty(n_items)
    for c in range(N_CATEGORIES):
        members = np.flatnonzero(category == c)
        base[members] = -ZIPF_EXPONENT * np.log(rng.permutation(members.size) + 1.0)
    # Some launches are hits: they enter among the top ~3 of their category.
    hits = (launch > 0) & (rng.random(n_items) < HIT_LAUNCH_SHARE)
    base[hits] = -ZIPF_EXPONENT * np.log(rng.uniform(1.0, 3.0, size=hits.sum()))

    # Drift: log popularity moves linearly in time. Most items wander a little,
    # ~12% clearly trend up and ~12% fade. Old items pivot around mid-period
    # (so fading items were popular early), new items around their launch.
    slope = rng.normal(0.0, 0.04, size=n_items)
    kind = rng.random(n_items)
    slope[kind < 0.12] += 0.18
    slope[kind > 0.88] -= 0.18
    pivot = np.where(launch == 0, (N_DAYS - 1) / 2, launch).astype(float)
    days = np.arange(N_DAYS, dtype=float)[:, None]
    log_pop = base + slope * (days - pivot)
    log_pop[days < launch] = -np.inf

    factors = rng.normal(0.0, 1.0 / np.sqrt(LATENT_DIM), size=(n_items, LATENT_DIM))
    by_category = [np.flatnonzero(category == c) for c in range(N_CATEGORIES)]
    return Catalogue(category, log_pop, factors, by_category, cat_share)


def make_population(rng: np.random.Generator, cat_share: Float) -> Population:
    # First visit: about a third of the early users are there on day 1, the rest join
    # during days 2-10; a fixed number join on each of days 11-14. Users are
    # numbered in order of first visit, like sign-up ids.
    n_late = NEW_USERS_PER_LATE_DAY * (N_DAYS - BASE_DAYS)
    n_early = N_USERS - n_late
    early = np.where(rng.random(n_early) < 0.3, 0, rng.integers(1, BASE_DAYS, size=n_early))
    late = np.repeat(np.arange(BASE_DAYS, N_DAYS), NEW_USERS_PER_LATE_DAY)
    start = np.sort(np.concatenate([early, late]))

    # After the first visit a user comes back on a given day with a personal
    # probability (mean ~1/3), a little more often on weekends (1 March 2026 is
    # a Sunday).
    days = np.arange(N_DAYS)
    weekend = np.where(days % 7 == 0, 1.2, np.where(days % 7 == 6, 1.15, 1.0))
    activity = rng.beta(2.0, 4.0, size=N_USERS)
    returns = rng.random((N_USERS, N_DAYS)) < activity[:, None] * weekend
    active = (days == start[:, None]) | ((days > start[:, None]) & returns)

    # Taste clusters: 1-2 preferred categories (drawn by traffic) get
    # PREFERRED_SHARE of the sessions, the rest spreads by category traffic.
    cat_pref = np.empty((N_USERS, N_CATEGORIES))
    for u in range(N_USERS):
        n_pref = 1 + int(rng.random() < 0.5)
        pref = rng.choice(N_CATEGORIES, size=n_pref, replace=False, p=cat_share)
        other = np.ones(N_CATEGORIES, dtype=bool)
        other[pref] = False
        cat_pref[u] = 0.0
        cat_pref[u, other] = (1 - PREFERRED_SHARE) * cat_share[other] / cat_share[other].sum()
        first = 1.0 if n_pref == 1 else rng.uniform(0.5, 0.75)
        cat_pref[u, pref] = PREFERRED_SHARE * np.array([first, 1.0 - first][:n_pref])

    factors = rng.normal(0.0, 1.0, size=(N_USERS, LATENT_DIM))
    return Population(active, cat_pref, factors)


def gap(rng: np.random.Generator, mean: float) -> int:
    """Seconds between two consecutive events (at least 1, so no ties)."""
    return 1 + int(rng.exponential(mean))


def simulate(rng: np.random.Generator, cat: Catalogue, pop: Population) -> Int:
    """Play out every session; returns (n_events, 4) rows of (ts, user, item, event)."""
    affinity = AFFINITY_STRENGTH * pop.factors @ cat.factors.T  # (n_users, n_items)
    history: list[list[int]] = [[] for _ in range(N_USERS)]
    events: list[tuple[int, int, int, int]] = []
    for d in range(N_DAYS):
        day_start, day_end = d * SECONDS_PER_DAY, (d + 1) * SECONDS_PER_DAY
        users = np.flatnonzero(pop.active[:, d])
        n_sessions = 1 + rng.poisson(EXTRA_SESSIONS_PER_DAY, size=users.size)
        for u, k in zip(users.tolist(), n_sessions.tolist(), strict=True):
            hours = np.sort(rng.choice(24, size=k, replace=False, p=HOUR_WEIGHTS))
            for hour in hours.tolist():
                # Pick a category by taste, then items in it by today's
                # popularity times the user's personal affinity.
                c = rng.choice(N_CATEGORIES, p=pop.cat_pref[u])
                cand = cat.by_category[c]
                logits = cat.log_pop[d, cand] + affinity[u, cand]
                p = np.exp(logits - logits.max())
                p /= p.sum()
                n_fresh = min(int(rng.geometric(SESSION_STOP_PROB)), int(np.count_nonzero(p)))
                picks = rng.choice(cand, size=n_fresh, replace=False, p=p).tolist()
                # Coming back to something seen earlier (any category).
                if history[u] and rng.random() < REVISIT_PROB:
                    old = history[u][int(rng.integers(len(history[u])))]
                    if old not in picks:
                        picks.insert(int(rng.integers(len(picks) + 1)), old)

                t = day_start + hour * 3600 + int(rng.integers(3600))
                session: list[tuple[int, int, int, int]] = []
                repeats: list[int] = []
                for item in picks:
                    session.append((t, u, item, VIEW))
                    if rng.random() < CART_PROB:
                        t += gap(rng, 60)
                        session.append((t, u, item, CART))
                        if rng.random() < PURCHASE_PROB:
                            t += gap(rng, 180)
                            session.append((t, u, item, PURCHASE))
                    elif rng.random() < DIRECT_PURCHASE_PROB:
                        t += gap(rng, 90)
                        session.append((t, u, item, PURCHASE))
                    if rng.random() < REPEAT_VIEW_PROB:
                        repeats.append(item)
                    t += gap(rng, 45)
                for item in repeats:
                    session.append((t, u, item, VIEW))
                    t += gap(rng, 30)
                # Keep the session inside its day by sliding it earlier.
                overflow = max(0, session[-1][0] - (day_end - 1))
                events.extend((ts - overflow, uu, i, e) for ts, uu, i, e in session)
                history[u].extend(x for x in picks if x not in history[u])

    arr = np.array(events, dtype=np.int64)
    # Two overlapping sessions could in principle emit the very same row; drop
    # such accidents so that every exact duplicate in the output is deliberate.
    _, first = np.unique(arr, axis=0, return_index=True)
    arr = arr[np.sort(first)]
    return arr[np.argsort(arr[:, 0], kind="stable")]


def to_rows(events: Int, category: Int) -> list[list[str]]:
    stamps = np.datetime_as_string(START + events[:, 0].astype("timedelta64[s]"), unit="s")
    return [
        [f"u{u + 1:05d}", f"i{i + 1:05d}", EVENT_NAMES[e], f"{ts}Z", f"c{category[i] + 1:02d}"]
        for (u, i, e), ts in zip(events[:, 1:].tolist(), stamps.tolist(), strict=True)
    ]


def add_dirt(
    rng: np.random.Generator, rows: list[list[str]], plan: tuple[int, int, int, int], bad: list[str]
) -> list[list[str]]:
    """Blank some ids, garble some timestamps and duplicate some rows, in place."""
    n_user, n_item, n_ts, n_dup = plan
    chosen = iter(rng.choice(len(rows), size=sum(plan), replace=False).tolist())
    for _ in range(n_user):
        rows[next(chosen)][0] = ""
    for _ in range(n_item):
        rows[next(chosen)][1] = ""
    for text in bad[:n_ts]:
        rows[next(chosen)][3] = text
    # Half the duplicates sit right after their original (a double submit), the
    # others anywhere in the file (a replayed batch).
    inserts: list[tuple[int, list[str]]] = []
    for j in range(n_dup):
        src = next(chosen)
        pos = src + 1 if j % 2 == 0 else int(rng.integers(len(rows) + 1))
        inserts.append((pos, list(rows[src])))
    for pos, row in sorted(inserts, key=lambda x: x[0], reverse=True):
        rows.insert(pos, row)
    return rows


def write_csv(path: Path, rows: list[list[str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(HEADER)
        writer.writerows(rows)


def generate(out_dir: Path, seed: int) -> dict[str, int]:
    """Write base.csv, day11..day14.csv and the session log to ``out_dir``; returns rows per file."""
    rng = np.random.default_rng(seed)
    cat = make_catalogue(rng)
    pop = make_population(rng, cat.cat_share)
    events = simulate(rng, cat, pop)

    day = events[:, 0] // SECONDS_PER_DAY
    parts = {"base": day < BASE_DAYS}
    parts.update({f"day{d + 1}": day == d for d in range(BASE_DAYS, N_DAYS)})
    out_dir.mkdir(parents=True, exist_ok=True)
    bad = list(BAD_TIMESTAMPS)
    counts: dict[str, int] = {}
    for name, mask in parts.items():
        plan = DIRTY_PLAN[name]
        rows = add_dirt(rng, to_rows(events[mask], cat.category), plan, bad)
        bad = bad[plan[2] :]
        write_csv(out_dir / f"{name}.csv", rows)
        counts[name] = len(rows)
    return counts | generate_sessions(out_dir, seed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--out-dir", type=Path, default=Path(__file__).resolve().parent)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    for name, n in generate(args.out_dir, args.seed).items():
        print(f"{args.out_dir / name}.csv: {n} rows")


if __name__ == "__main__":
    main()
