"""The one training loop shared by every task and method, and its checkpoints."""

from .checkpoint import load_trained, save_trained
from .checkpoint import remove as remove_checkpoints
from .loop import TrainingDiverged, TrainResult, train
from .memory import PeakRSS

__all__ = ["PeakRSS", "TrainResult", "TrainingDiverged", "load_trained", "remove_checkpoints", "save_trained", "train"]
