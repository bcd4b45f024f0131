"""Inception-v3 for true FID/KID, from the pytorch-fid weights file the user supplies.

``net`` (the FID variant of Inception-v3), ``features`` (pool3 features of photos).
"""

from angioflow.models.inception.features import InceptionFeatureExtractor
from angioflow.models.inception.net import FIDInceptionV3

__all__ = ["FIDInceptionV3", "InceptionFeatureExtractor"]
