"""Progress on a terminal (tqdm on stderr); silent when piped, in CI, or asked to be quiet."""

from __future__ import annotations

import sys

from tqdm import tqdm


class Stages:
    """A bar over named pipeline stages: ``with Stages([...]) as s: s.next('load') ...``."""

    def __init__(self, names: list[str], enabled: bool = True) -> None:
        self.bar = tqdm(total=len(names), disable=not (enabled and sys.stderr.isatty()), leave=False,
                        file=sys.stderr, bar_format="{desc} {bar} {n_fmt}/{total_fmt} {elapsed}")

    def next(self, label: str) -> None:
        self.bar.set_description_str(label)
        self.bar.update(1)

    def __enter__(self) -> Stages:
        return self

    def __exit__(self, *exc) -> None:
        self.bar.close()


def steps(total: int, label: str, enabled: bool = True) -> tqdm:
    """A bar over ``total`` steps of one long stage (gradient batches, training steps)."""
    return tqdm(total=total, desc=label, disable=not (enabled and sys.stderr.isatty()), leave=False,
                file=sys.stderr)
