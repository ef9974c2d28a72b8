"""vlrouter: an edge-cloud routing inference server for vision-language models."""

from vlrouter.runtime import set_process_defaults

__version__ = "0.1.0"

set_process_defaults()
