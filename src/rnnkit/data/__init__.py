"""Data: windows over series (more formats arrive with the task issues)."""

from rnnkit.data.windows import sliding_windows, split_by_time

__all__ = ["sliding_windows", "split_by_time"]
