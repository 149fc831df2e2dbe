"""Generate the synthetic click-session log shipped in ``sample_data/`` (called by generate.py).

Session logs (YooChoose, news sites, anonymous shoppers) have no user ids: every visit is a new
``session_id`` that never comes back, so a model can only go by the clicks of the visit so far.
This log has the structure that makes session models worth having, on a small catalogue:

* 12 themes (a product line, a series of articles), each browsed as a *chain* of 36 items in a
  fixed order: a click that does not go back (below) mostly moves on to the next item of the
  chain (50%) or the one after it (15%), else it jumps elsewhere in the theme; a visit stays in
  its theme;
* 6 items of each chain are *hubs* drawn from 36 shared by the chains (most sit in 2-4 chains),
  so what follows a hub depends on which chain the visit is in: the last click alone cannot
  tell, the earlier clicks of the visit can (what session-kNN adds over the sequential rule
  "the most frequent next item after the last click");
* about 30% of the clicks go back to an item clicked earlier in the visit (mostly a re-click of
  the last one), as in real click logs;
* popularity skew: theme traffic ~ 1 / rank, and visits enter (and jump within) their chain
  mostly in its first half;
* 2 to ~17 clicks per visit (mean ~4.3), tens of seconds apart, over 4 days (2026-04-01 ..
  2026-04-04 UTC), each visit inside its day, so ``recinc split --at 2026-04-04`` holds out the
  last day whole.

Output, columns ``session_id,item_id,timestamp``, rows in time order:

* ``sessions.csv``: the log (sessions ``s00001``.. numbered in order of their first click,
  items ``i0001`` .. ``i0396``, ~4,300 clicks);
* ``live_session.csv``: one visit in progress on the last day (session ``live``: the first three
  items of the busiest theme's chain, the second one clicked twice), to serve with
  ``recinc recommend --history``.

Only the standard library and numpy are used; the output is byte-for-byte identical for a seed.
The generator is seeded apart from the e-commerce log's, so neither changes the other.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

Int = NDArray[np.int64]

START = np.datetime64("2026-04-01T00:00:00", "s")
N_DAYS = 4
SECONDS_PER_DAY = 86_400
N_THEMES = 12
OWN_ITEMS_PER_THEME = 30  # items in one chain only
N_HUBS = 36  # items shared by chains
HUBS_PER_THEME = 6  # chain length = 30 + 6 = 36
N_SESSIONS = 1_000
SEED_SALT = 13  # the session log's generator is seeded with (seed, SEED_SALT)

LENGTH_STOP_PROB = 0.3  # clicks per visit: 1 + geometric, mean ~4.3
ENTRY_STOP_PROB = 0.06  # position where a visit enters (or jumps to): geometric from the start
REPEAT_PROB = 0.35  # a click goes back to an item of the visit ...
RECLICK_SHARE = 0.6  # ... and then mostly to the last one
NEXT_PROB, SKIP_PROB = 0.5, 0.15  # otherwise: the next item of the chain, the one after, else a jump
CLICK_GAP_SECONDS = 40.0  # mean seconds between clicks

HEADER = ("session_id", "item_id", "timestamp")
# Traffic by hour of day (UTC), as in the e-commerce log.
HOUR_WEIGHTS = np.array([2, 1, 1, 1, 1, 2, 3, 5, 6, 6, 6, 7, 8, 7, 6, 6, 7, 8, 10, 12, 12, 10, 7, 4], dtype=float)
HOUR_WEIGHTS /= HOUR_WEIGHTS.sum()


def make_chains(rng: np.random.Generator) -> list[Int]:
    """Each theme's chain: its own items and some hubs, in a random browsing order."""
    n_own = N_THEMES * OWN_ITEMS_PER_THEME
    hubs = n_own + np.arange(N_HUBS)
    chains = []
    for t in range(N_THEMES):
        own = t * OWN_ITEMS_PER_THEME + np.arange(OWN_ITEMS_PER_THEME)
        shared = rng.choice(hubs, size=HUBS_PER_THEME, replace=False)
        chains.append(rng.permutation(np.concatenate([own, shared])))
    return chains


def entry(rng: np.random.Generator, chain: Int) -> int:
    """A position to enter the chain at (or jump to), mostly near its start."""
    return min(int(rng.geometric(ENTRY_STOP_PROB)) - 1, chain.size - 1)


def play_visit(rng: np.random.Generator, chain: Int) -> list[int]:
    """The items one visit clicks, in order."""
    n_clicks = 1 + int(rng.geometric(LENGTH_STOP_PROB))
    pos = entry(rng, chain)
    clicks, positions = [int(chain[pos])], [pos]
    while len(clicks) < n_clicks:
        u = rng.random()
        if u < REPEAT_PROB:
            back = len(clicks) - 1 if rng.random() < RECLICK_SHARE else int(rng.integers(len(clicks)))
            pos = positions[back]
        else:
            v = rng.random()
            step = 1 if v < NEXT_PROB else 2 if v < NEXT_PROB + SKIP_PROB else 0
            pos = pos + step if step and pos + step < chain.size else entry(rng, chain)
        clicks.append(int(chain[pos]))
        positions.append(pos)
    return clicks


def simulate(rng: np.random.Generator, chains: list[Int]) -> Int:
    """Every visit; returns (n_clicks, 3) rows of (seconds since START, session, item), time-sorted."""
    traffic = 1.0 / np.arange(1, N_THEMES + 1)
    traffic /= traffic.sum()
    themes = rng.choice(N_THEMES, size=N_SESSIONS, p=traffic)
    starts = rng.integers(N_DAYS, size=N_SESSIONS) * SECONDS_PER_DAY
    starts += rng.choice(24, size=N_SESSIONS, p=HOUR_WEIGHTS) * 3600 + rng.integers(3600, size=N_SESSIONS)
    rows: list[tuple[int, int, int]] = []
    for s, (theme, t0) in enumerate(zip(themes.tolist(), starts.tolist(), strict=True)):
        items = play_visit(rng, chains[theme])
        times = t0 + np.cumsum([0] + [1 + int(rng.exponential(CLICK_GAP_SECONDS)) for _ in items[1:]])
        day_end = (t0 // SECONDS_PER_DAY + 1) * SECONDS_PER_DAY
        times -= max(0, int(times[-1]) - (day_end - 1))  # keep the visit inside its day
        rows.extend((int(t), s, i) for t, i in zip(times.tolist(), items, strict=True))
    arr = np.array(rows, dtype=np.int64)
    arr = arr[np.lexsort((arr[:, 1], arr[:, 0]))]
    # Number sessions in order of their first click, like a web server's session counter.
    _, first = np.unique(arr[:, 1], return_index=True)
    rank = np.empty(N_SESSIONS, dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(N_SESSIONS)
    arr[:, 1] = rank[arr[:, 1]]
    return arr


def write_csv(path: Path, rows: list[tuple[str, str, str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(HEADER)
        writer.writerows(rows)


def stamp(seconds: Int) -> list[str]:
    return [f"{t}Z" for t in np.datetime_as_string(START + seconds.astype("timedelta64[s]"), unit="s").tolist()]


def generate_sessions(out_dir: Path, seed: int) -> dict[str, int]:
    """Write sessions.csv and live_session.csv to ``out_dir``; returns rows per file."""
    rng = np.random.default_rng([seed, SEED_SALT])
    chains = make_chains(rng)
    clicks = simulate(rng, chains)
    rows = [
        (f"s{s + 1:05d}", f"i{i + 1:04d}", ts)
        for (s, i), ts in zip(clicks[:, 1:].tolist(), stamp(clicks[:, 0]), strict=True)
    ]
    write_csv(out_dir / "sessions.csv", rows)

    busiest = chains[0][:3].tolist()  # theme 0 draws the most traffic
    live_items = [busiest[0], busiest[1], busiest[1], busiest[2]]
    live_times = stamp((N_DAYS - 1) * SECONDS_PER_DAY + 15 * 3600 + 40 * np.arange(len(live_items), dtype=np.int64))
    live = [("live", f"i{i + 1:04d}", ts) for i, ts in zip(live_items, live_times, strict=True)]
    write_csv(out_dir / "live_session.csv", live)
    return {"sessions": len(rows), "live_session": len(live)}
