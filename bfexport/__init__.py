"""bfexport: export BudgetFormer models with real per-input head skipping, and calibrate them."""

from bfexport.checkpoint import load_checkpoint, save_checkpoint
from bfexport.errors import BfexportError
from bfexport.model import BudgetFormerConfig, BudgetFormerForSequenceClassification
from bfexport.runtime import OnnxClassifier, Prediction

__all__ = ["BfexportError", "BudgetFormerConfig", "BudgetFormerForSequenceClassification", "OnnxClassifier",
           "Prediction", "load_checkpoint", "save_checkpoint"]
