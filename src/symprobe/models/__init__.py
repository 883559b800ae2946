"""Models: one small contract (:class:`~symprobe.models.base.Model`) that every engine speaks."""

from symprobe.models.base import BatchPrediction, CalculatorModel, Model, ModelCalculator, Prediction

__all__ = ["BatchPrediction", "CalculatorModel", "Model", "ModelCalculator", "Prediction"]
