"""Data: batches, windows over series, scalers and synthetic series."""

from rnnkit.data.batch import Batch, Stream, stack_pairs
from rnnkit.data.windows import sliding_windows, split_by_time

__all__ = ["Batch", "Stream", "sliding_windows", "split_by_time", "stack_pairs"]
