"""The deletion pipeline: request ledger, interaction store and serving model kept in step.

Optional extra ``recforget[service]`` (SQLAlchemy 2, psycopg 3, cryptography). Nothing here is
imported by the rest of recforget, and nothing runs at import time. An HTTP layer calls
:class:`DeletionService`'s methods, as the ``recforget service`` commands do.
"""

from recforget.service.core import DeletionService, NotFound, ServiceError
from recforget.service.ledger import IdempotencyConflict, LedgerError, StaleState, Submission
from recforget.service.states import ALLOWED, IllegalTransition, State
from recforget.service.store import IngestResult, SuppressedSubjectError
from recforget.service.versions import VersionIntegrityError
from recforget.service.worker import LeaseLost, Worker, WorkerConfig

__all__ = [
    "ALLOWED",
    "DeletionService",
    "IdempotencyConflict",
    "IllegalTransition",
    "IngestResult",
    "LeaseLost",
    "LedgerError",
    "NotFound",
    "ServiceError",
    "StaleState",
    "State",
    "Submission",
    "SuppressedSubjectError",
    "VersionIntegrityError",
    "Worker",
    "WorkerConfig",
]
