"""A local SparkSession configured for recforget (tests, benchmarks, the CLI's default)."""

from __future__ import annotations

import os
import sys

__all__ = ["local_session"]


def local_session(
    master: str = "local[2]",
    *,
    shuffle_partitions: int = 4,
    app_name: str = "recforget",
    driver_memory: str = "2g",
    conf: dict[str, str] | None = None,
):
    """Get or create a SparkSession: UI off, few shuffle partitions, Arrow on.

    The Python workers run this interpreter (``PYSPARK_PYTHON``) with one BLAS/OpenMP thread
    each (Spark runs one task per core); on a cluster, install recforget on the executors.
    """
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = (
        SparkSession.builder.master(master)
        .appName(app_name)
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", str(shuffle_partitions))
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.driver.memory", driver_memory)
        .config("spark.sql.adaptive.enabled", "false")
    )
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        builder = builder.config(f"spark.executorEnv.{var}", "1")
    for key, value in (conf or {}).items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark
