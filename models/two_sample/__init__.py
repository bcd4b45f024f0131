"""Classifier two-sample test of synthetic photos: can a small CNN tell them from real ones?

``net`` (the crop classifier and its config), ``cross_validation`` (cross-validated training and the
held-out AUC). After Lopez-Paz & Oquab, "Revisiting classifier two-sample tests", ICLR 2017:
an AUC near 0.5 on held-out images means the classifier found nothing that tells the sets
apart; near 1, it tells every image's source.
"""

from angioflow.models.two_sample.cross_validation import TwoSampleResult, classifier_two_sample_test
from angioflow.models.two_sample.net import CropClassifier, TwoSampleConfig

__all__ = ["CropClassifier", "TwoSampleConfig", "TwoSampleResult", "classifier_two_sample_test"]
