"""The one training loop shared by every task and method."""

from .loop import TrainingDiverged, TrainResult, train
from .memory import PeakRSS

__all__ = ["PeakRSS", "TrainResult", "TrainingDiverged", "train"]
