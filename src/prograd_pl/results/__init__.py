"""Results store (one results.json per run), aggregation into the paper's tables, renderers and plots."""

from prograd_pl.results.aggregate import (
    DEFAULT_SEEDS,
    Cell,
    SeedStats,
    Table,
    base2new_tables,
    build_tables,
    fewshot_tables,
    group_runs,
    harmonic_mean,
    mean_std,
    transfer_tables,
)
from prograd_pl.results.store import (
    SCHEMA_VERSION,
    ResultsError,
    ResultsWarning,
    is_finished,
    iter_results,
    read_results,
    write_results,
)

__all__ = [
    "DEFAULT_SEEDS",
    "SCHEMA_VERSION",
    "Cell",
    "ResultsError",
    "ResultsWarning",
    "SeedStats",
    "Table",
    "base2new_tables",
    "build_tables",
    "fewshot_tables",
    "group_runs",
    "harmonic_mean",
    "is_finished",
    "iter_results",
    "mean_std",
    "read_results",
    "transfer_tables",
    "write_results",
]
