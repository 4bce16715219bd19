"""Scale-out on Apache Spark: ALS fit and Unlearn-ALS over rating blocks, MLlib interop.

Optional extra ``recforget[spark]``. Nothing here imports pyspark at import time:
:mod:`recforget.spark.interop` (``ALSModel`` directories) needs only pyarrow, and the engine
(:mod:`recforget.spark.engine`) imports pyspark when it is used. See docs/spark.md.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "SparkALS",
    "SparkInteractions",
    "als_from_spark",
    "als_to_spark",
    "forget",
    "local_session",
    "read_als_model",
    "write_als_model",
]

_WHERE = {
    "SparkALS": "recforget.spark.engine",
    "forget": "recforget.spark.unlearn",
    "SparkInteractions": "recforget.spark.data",
    "local_session": "recforget.spark.session",
    "als_from_spark": "recforget.spark.interop",
    "als_to_spark": "recforget.spark.interop",
    "read_als_model": "recforget.spark.interop",
    "write_als_model": "recforget.spark.interop",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'recforget.spark' has no attribute {name!r}")
