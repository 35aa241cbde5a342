"""A tiny progress bar (tqdm is not a dependency): redraws in place on a terminal, prints lines in a log file."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """``update(n, **stats)`` after every step; ``every`` throttles printing when not on a TTY (nohup logs)."""

    def __init__(self, total: int, desc: str = "", every: int = 20, stream: TextIO = sys.stdout) -> None:
        self.total, self.desc, self.every, self.stream = total, desc, every, stream
        self.n = 0
        self.t0 = time.time()
        self.tty = stream.isatty()

    def update(self, n: int = 1, **stats: float) -> None:
        self.n += n
        if not self.tty and self.n % self.every and self.n != self.total:
            return
        el = time.time() - self.t0
        rate = self.n / max(el, 1e-9)
        frac = min(self.n / max(self.total, 1), 1.0)
        bar = "#" * int(frac * 24) + "-" * (24 - int(frac * 24))
        eta = (self.total - self.n) / max(rate, 1e-9)
        s = " ".join(f"{k}={v:.4g}" for k, v in stats.items())
        line = f"{self.desc} [{bar}] {self.n}/{self.total} {rate:.2f}it/s eta {eta / 60:.1f}m {s}"
        self.stream.write(("\r" + line) if self.tty else line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
