"""brainmri: brain-tumour MRI slice classification with explanations.

Research and education only; not a medical device.
"""
from .classes import CLASSES, canonical_class
from .predictor import Explanation, Prediction, Predictor

__all__ = ["CLASSES", "canonical_class", "Predictor", "Prediction", "Explanation"]
__version__ = "0.1.0"
