"""Query features: encoders, complexity signals, fusion, cache and micro-batching."""

from vlrouter.features.fusion import fuse
from vlrouter.features.pipeline import FeaturePipeline, QueryFeatures
from vlrouter.features.spec import FeatureSpec, FeatureSpecMismatch

__all__ = ["FeaturePipeline", "FeatureSpec", "FeatureSpecMismatch", "QueryFeatures", "fuse"]
