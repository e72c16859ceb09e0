"""Training: the Trainer, its config, callbacks, checkpoints and distributed set-up."""

from rnnkit.train.callbacks import Callback, CSVLogger, LossCurve, ProgressBar, TensorBoard
from rnnkit.train.options import EarlyStoppingConfig, OptimizerConfig, ScheduleConfig, TrainConfig
from rnnkit.train.trainer import Trainer, epoch_order

__all__ = [
    "CSVLogger",
    "Callback",
    "EarlyStoppingConfig",
    "LossCurve",
    "OptimizerConfig",
    "ProgressBar",
    "ScheduleConfig",
    "TensorBoard",
    "TrainConfig",
    "Trainer",
    "epoch_order",
]
