"""Progress: tqdm bars on a terminal; when piped (CI, logs) the stage and status as a plain line on stderr
at most every LOG_INTERVAL seconds, so a short run prints nothing and a long one shows it is alive; nothing
when asked to be quiet."""

from __future__ import annotations

import sys
import time

from tqdm import tqdm

LOG_INTERVAL = 15.0  # seconds between progress lines when stderr is not a terminal


class _Lines:
    """The stage bar's interface for a non-terminal stderr: the latest status, printed when LOG_INTERVAL has
    passed since the start or the last line printed."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.last = time.monotonic()

    def set_description_str(self, text: str) -> None:
        now = time.monotonic()
        if self.enabled and now - self.last >= LOG_INTERVAL:
            print(f"onnxprune: {text}", file=sys.stderr, flush=True)
            self.last = now

    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


class Stages:
    """A bar over named pipeline stages: ``with Stages([...]) as s: s.next('load') ...``."""

    def __init__(self, names: list[str], enabled: bool = True) -> None:
        self.bar = (tqdm(total=len(names), leave=False, file=sys.stderr, bar_format="{desc} {bar} {n_fmt}/{total_fmt} "
                         "{elapsed}") if enabled and sys.stderr.isatty() else _Lines(enabled))

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
