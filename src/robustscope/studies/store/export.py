"""``export``: every table of a study's store as CSV or Parquet files."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import TYPE_CHECKING

from robustscope.io import atomic_write
from robustscope.studies.store.base import StoreError
from robustscope.studies.store.connection import open_store

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["EXPORT_TABLES", "export"]

#: the files :func:`export` writes, one per table
EXPORT_TABLES = (
    "runs", "metrics", "attack_results", "attack_flags", "history", "probes", "artifacts",
    "provenance", "studies",
)  # fmt: skip


def export(
    study_dir: str | Path,
    format: str = "csv",
    out: str | Path | None = None,
) -> list[Path]:
    """Write every table of a study's store as ``<table>.csv`` or ``<table>.parquet``.

    The files (in ``out``, default ``<study_dir>/export``), one per table of
    :data:`EXPORT_TABLES`: ``runs`` (``Store.runs_table``), ``metrics`` (wide, run columns
    first: ``metrics_table(with_runs=True)``), ``attack_results`` and ``attack_flags`` (long,
    as stored), ``history`` (wide), ``probes`` (wide), ``artifacts`` (the index of ``.npz``
    files; shape as JSON), ``provenance`` and ``studies`` (spec as JSON). NaN is an empty CSV
    field. Each file is written atomically. Returns the paths written. Parquet needs pyarrow
    (:class:`StoreError` says so).

    Example:
        >>> import tempfile
        >>> study = tempfile.mkdtemp()
        >>> open_store(study, create=True).close()
        >>> sorted(p.name for p in export(study, format="csv"))[:3]
        ['artifacts.csv', 'attack_flags.csv', 'attack_results.csv']
    """
    if format not in ("csv", "parquet"):
        raise StoreError(f"export format must be 'csv' or 'parquet', got {format!r}")
    if format == "parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise StoreError(
                "export --format parquet needs pyarrow, which is not installed: "
                "pip install pyarrow (or use --format csv)"
            ) from None
    with open_store(study_dir) as store:
        artifacts = store.artifacts_table()
        artifacts["shape"] = [json.dumps(list(s)) for s in artifacts["shape"]]
        tables = {
            "runs": store.runs_table(),
            "metrics": store.metrics_table(with_runs=True).reset_index(),
            "attack_results": store.attack_results_long(),
            "attack_flags": store.attack_flags_long(),
            "history": store.history_table(),
            "probes": store.probes_table().reset_index(),
            "artifacts": artifacts,
            "provenance": store.provenance_table(),
            "studies": store.studies_table(),
        }
        root = store.root
    dest = Path(out) if out is not None else root / "export"
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for name in EXPORT_TABLES:
        file = dest / f"{name}.{format}"
        atomic_write(file, functools.partial(_write_table, df=tables[name], format=format))
        written.append(file)
    return written


def _write_table(tmp: Path, df: pd.DataFrame, format: str) -> None:
    if format == "csv":
        df.to_csv(tmp, index=False)
    else:
        df.to_parquet(tmp, index=False)
