"""The generated-graph differential test at scale: prune seeded small graphs and compare with onnxruntime.

Run from anywhere::

    python tools/fuzz.py --seeds 20000 [--start 0] [--jobs 2] [--show 20] [--json out.json]

Seed ``s`` builds the case of ``tests/graphgen.py`` for op ``OPS[s % len(OPS)]`` (every op of the
registry in turn) and runs three checks on it: ``lumping`` (lossless), ``remove`` (explicit channels,
against the original with their consumer weights zeroed) and ``ratio`` (l1 at 0.3, same oracle). The
table counts outcomes per op over all checks: exact (equal, channels removed), kept (equal, nothing
removed), frozen (the channels are frozen with a reason), refused (an onnxprune error), WRONG (runs but
computes something else or states wrong shapes) and crash (any other exception). Every WRONG and crash
is listed with its seed (``--show`` limits how many), so ``--seeds 1 --start SEED`` reproduces one.
Exit status 1 if anything was WRONG or crashed.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import graphgen  # noqa: E402

BAD = ("WRONG", "crash")


def _one(seed: int) -> tuple[int, str, str, dict]:
    try:
        case, results = graphgen.run_seed(seed)
        return seed, case.op, case.describe(), results
    except Exception as exc:  # the generator itself failed: reported, never hidden
        op = graphgen.OPS[seed % len(graphgen.OPS)]
        return seed, op, f"seed {seed}: {op}: generator failed", {"generate": ("crash", repr(exc))}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, required=True, help="number of seeds (cases)")
    ap.add_argument("--start", type=int, default=0, help="first seed")
    ap.add_argument("--jobs", type=int, default=1, help="worker processes")
    ap.add_argument("--show", type=int, default=30, help="list at most this many WRONG/crash results")
    ap.add_argument("--json", type=Path, help="write every WRONG, crash and refused result here")
    ap.add_argument("--op", action="append", help="only the seeds of this registry op (repeatable)")
    args = ap.parse_args(argv)
    seeds = range(args.start, args.start + args.seeds)
    if args.op:
        unknown = sorted(set(args.op) - set(graphgen.OPS))
        if unknown:
            ap.error(f"not a registry op with generator templates: {', '.join(unknown)}")
        n = len(graphgen.OPS)
        idx = sorted(graphgen.OPS.index(o) for o in args.op)
        base = args.start - args.start % n  # seed s builds a case for OPS[s % n]
        seeds = [s for k in range(-(-args.seeds // len(idx)) + 1) for i in idx
                 if (s := base + k * n + i) >= args.start][:args.seeds]
    t0 = time.perf_counter()
    table: dict[str, Counter] = defaultdict(Counter)
    per_check: dict[str, Counter] = defaultdict(Counter)
    bad, notable = [], []
    with multiprocessing.Pool(args.jobs) if args.jobs > 1 else _Serial() as pool:
        for k, (seed, op, desc, results) in enumerate(pool.imap_unordered(_one, seeds, chunksize=16), 1):
            for check, (outcome, detail) in results.items():
                table[op][outcome] += 1
                per_check[check][outcome] += 1
                if outcome in BAD:
                    bad.append((seed, check, outcome, desc, detail))
                elif outcome in ("refused",):
                    notable.append((seed, check, outcome, desc, detail))
            if k % 1000 == 0:
                print(f"... {k} cases, {time.perf_counter() - t0:.0f} s, {len(bad)} bad", file=sys.stderr, flush=True)
    elapsed = time.perf_counter() - t0
    cols = graphgen.OUTCOMES
    print(f"{len(seeds)} cases (seeds from {args.start}), {3 * len(seeds)} checks, "
          f"{elapsed:.0f} s ({len(seeds) / elapsed:.1f} cases/s, {args.jobs} job(s))\n")
    print(f"{'op':<26}" + "".join(f"{c:>8}" for c in cols))
    for op in sorted(table):
        print(f"{op:<26}" + "".join(f"{table[op][c]:>8}" for c in cols))
    total = Counter()
    for c in table.values():
        total.update(c)
    print(f"{'TOTAL':<26}" + "".join(f"{total[c]:>8}" for c in cols))
    print()
    for check in sorted(per_check):
        print(f"{check:<26}" + "".join(f"{per_check[check][c]:>8}" for c in cols))
    if bad:
        print(f"\n{len(bad)} WRONG/crash:")
        for _seed, check, outcome, desc, detail in sorted(bad)[:args.show]:
            print(f"  [{check} {outcome}] {desc}\n      {detail.strip().splitlines()[-1][:300]}")
    if args.json:
        args.json.write_text(json.dumps([dict(zip(("seed", "check", "outcome", "case", "detail"), r))
                                         for r in sorted(bad + notable)], indent=1))
    return 1 if bad else 0


class _Serial:
    """The Pool interface in this process (profiling, --jobs 1)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def imap_unordered(self, fn, items, chunksize=1):
        return map(fn, items)


if __name__ == "__main__":
    sys.exit(main())
