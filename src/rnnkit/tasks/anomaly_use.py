"""Using a trained anomaly detector: a score and a flag for every step of new data.

    detector = rnnkit.load("runs/ecg_anomalies/bundle")
    frame = detector.detect("new_recording.csv")      # or a DataFrame with the training columns
    frame[["score", "flag"]]                           # score: IQRs of the clean part; flag: above threshold

With the forecast score the first ``window`` steps have no score (NaN) and are not flagged: a
forecast needs a window of history. With the reconstruction score every step has one. A detector
trained with ``data.smooth`` leaves the first and last ``smooth // 2`` steps unscored too: their
span of steps runs past the data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rnnkit.anomaly import events, normalise
from rnnkit.data import scaler_from_state
from rnnkit.data.tables import read_table
from rnnkit.errors import ConfigError, DataError
from rnnkit.tasks import Predictor
from rnnkit.tasks.anomaly import detector_scores, flag


class AnomalyPredictor(Predictor):
    """A trained anomaly detector: ``detect`` scores and flags every step of a table."""

    verbs = (*Predictor.verbs, "detect", "predict")

    def detect(self, data: pd.DataFrame | str | Path, **options) -> pd.DataFrame:
        """The table with ``score`` and ``flag`` columns added (module docs)."""
        if options:
            raise ConfigError(f"detect takes no options; got {sorted(options)}")
        frame = data if isinstance(data, pd.DataFrame) else read_table(data)
        pre = self.preprocessing
        missing = [c for c in pre["columns"] if c not in frame.columns]
        if missing:
            raise DataError(f"no column {missing} in the data; the detector reads {pre['columns']}")
        values = frame[pre["columns"]].to_numpy(np.float64)
        if not np.isfinite(values).all():
            raise DataError("the signal has missing or infinite values: fill them first")
        if len(values) <= pre["window"]:
            raise DataError(f"{len(values)} rows are too few: the detector reads windows of {pre['window']}")
        scaled = scaler_from_state(pre["scaler"]).transform(values).astype(np.float32)
        scores = detector_scores(self.model, scaled, pre)
        decision = pre["decision"]
        out = frame.copy()
        out["score"] = normalise(scores, (decision["median"], decision["iqr"]))
        out["flag"] = flag(scores, decision)
        return out

    def predict(self, inputs, **options) -> list[dict[str, Any]]:
        """The flagged events of a table as {"start", "end"} rows (end exclusive), for the CLI."""
        flags = self.detect(Path(inputs) if isinstance(inputs, str) else inputs, **options)["flag"].to_numpy()
        return [{"start": start, "end": end} for start, end in events(flags)]

    def format(self, result: dict[str, Any]) -> str:
        return f"{result['start']}\t{result['end']}"
