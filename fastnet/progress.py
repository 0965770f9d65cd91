"""A one-line progress bar with samples per second and ETA, drawn only on a terminal."""

import sys
import time


class ProgressBar:
    """Redraws one line at most 10 times a second; does nothing when the stream is not a terminal."""

    def __init__(self, total, label="", stream=None, width=24):
        self.stream = stream or sys.stdout
        self.enabled = self.stream.isatty()
        self.total, self.width = total, width
        self.reset(label)

    def reset(self, label):
        """Start counting again from zero under a new label."""
        self.label, self.done = label, 0
        self.start = self.last = time.perf_counter()

    def update(self, n, loss=None):
        """Count n more samples; redraw when enough time has passed."""
        self.done += n
        now = time.perf_counter()
        if not self.enabled or (now - self.last < 0.1 and self.done < self.total):
            return
        self.last = now
        rate = self.done / max(now - self.start, 1e-9)
        eta = (self.total - self.done) / rate if rate > 0 else 0.0
        filled = int(self.width * self.done / self.total)
        bar = "#" * filled + "." * (self.width - filled)
        tail = f" loss {loss:.4f}" if loss is not None else ""
        self.stream.write(f"\r{self.label} [{bar}] {self.done}/{self.total} "
                          f"{rate:,.0f} samples/s ETA {eta:4.1f}s{tail}\033[K")
        self.stream.flush()

    def close(self):
        """Erase the bar so the next line starts clean."""
        if self.enabled:
            self.stream.write("\r\033[K")
            self.stream.flush()
