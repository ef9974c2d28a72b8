"""vlrouter: an edge-cloud routing inference server for vision-language models."""

__version__ = "0.1.0"
