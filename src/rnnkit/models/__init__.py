"""Task models: each file holds a <Task>Config and its model; registry.py maps names to both.

Importing this package registers every built-in model ("forecaster", "forecast_ensemble",
"classifier", "language_model", "seq2seq", "tagger", "autoencoder", "ctc", "piano_roll", "captioner",
"bit_sequence").
"""

from rnnkit.models.algorithmic import BitSequenceConfig, BitSequenceModel
from rnnkit.models.autoencoder import AutoencoderConfig, SequenceAutoencoder
from rnnkit.models.captioner import Captioner, CaptionerConfig
from rnnkit.models.classifier import ClassifierConfig, ClassifierOutput, SequenceClassifier
from rnnkit.models.ctc import CTCConfig, CTCModel
from rnnkit.models.ensemble import ForecastEnsemble, ForecastEnsembleConfig
from rnnkit.models.forecaster import Forecaster, ForecasterConfig
from rnnkit.models.language import LanguageModel, LanguageModelConfig
from rnnkit.models.piano_roll import PianoRollConfig, PianoRollModel
from rnnkit.models.registry import build_model, config_class, model_config, model_names, register_model
from rnnkit.models.seq2seq import Seq2Seq, Seq2SeqConfig
from rnnkit.models.tagger import SequenceTagger, TaggerConfig

__all__ = [
    "AutoencoderConfig",
    "BitSequenceConfig",
    "BitSequenceModel",
    "CTCConfig",
    "CTCModel",
    "Captioner",
    "CaptionerConfig",
    "ClassifierConfig",
    "ClassifierOutput",
    "ForecastEnsemble",
    "ForecastEnsembleConfig",
    "Forecaster",
    "ForecasterConfig",
    "LanguageModel",
    "LanguageModelConfig",
    "PianoRollConfig",
    "PianoRollModel",
    "Seq2Seq",
    "Seq2SeqConfig",
    "SequenceAutoencoder",
    "SequenceClassifier",
    "SequenceTagger",
    "TaggerConfig",
    "build_model",
    "config_class",
    "model_config",
    "model_names",
    "register_model",
]
