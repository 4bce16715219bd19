"""HTTP API and operator console for the deletion pipeline (optional extra ``[http]``).

:func:`create_app` builds a FastAPI app over a service home; ``recforget service serve``
runs it under uvicorn. Importing this package does no work: the app opens the database and
loads the model at startup.
"""

from recforget.service.http.app import create_app
from recforget.service.http.settings import Settings

__all__ = ["Settings", "create_app"]
