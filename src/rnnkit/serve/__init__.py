"""``rnnkit serve``: a bundle behind HTTP, on FastAPI and uvicorn (``pip install 'rnnkit[serve]'``).

    app = create_app("runs/sentiment/bundle", Limits(max_batch=16))   # an ASGI app
    serve("runs/sentiment/bundle", host="127.0.0.1", port=8000)          # run it with uvicorn

The endpoints are thin shells over the bundle's :class:`~rnnkit.tasks.Predictor` (see
:mod:`rnnkit.serve.app`).
"""

from rnnkit.serve.app import Limits, create_app, serve

__all__ = ["Limits", "create_app", "serve"]
