"""The project's error tree: every error a caller can cause or meet carries an HTTP status, an
OpenAI-style ``code`` and the ``param`` it concerns, so the API shapes any of them in one place
(``api.errors.as_error`` + ``error_payload``, in-stream errors included).

::

    VLRouterError                    status / code / param
     ├── RequestError                a request the gateway refuses (400 invalid_value, 401, 409, 415 ...)
     ├── UnknownModel (router)       a model that is neither vlrouter-auto, a tier nor a backend (404)
     ├── MediaError   (media)        an image that is malformed, too large or not allowed (400 / 413)
     ├── ScenarioError (router)      a scenario that is neither a preset nor valid weights (400)
     ├── ConfigError  (config)       settings or flags a command cannot run with (the CLI exits 2)
     └── BackendError (backends)     the model behind a tier failed or refused (503 / 502)
"""

from __future__ import annotations


class VLRouterError(Exception):
    """Base of every vlrouter error; subclasses set the class defaults of ``status`` and ``code``."""

    status: int = 500
    code: str | None = "internal_error"

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None,
                 param: str | None = None):
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code
        self.param = param


class RequestError(VLRouterError):
    """A request the gateway refuses: ``RequestError(404, "...", code="model_not_found", param="model")``."""

    status = 400
    code = "invalid_value"

    def __init__(self, status: int, message: str, *, code: str | None = None, param: str | None = None):
        super().__init__(message, status=status, code=code, param=param)
