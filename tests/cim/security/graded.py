"""A store with one copy of the sample district per data grade, for the security tests (not a test module).

``general`` (一般), ``important`` (重要), ``core`` (核心) and ``secret`` (一般, secret): the same network under
feature ids prefixed ``G:``, ``I:``, ``C:``, ``S:``, each with one QC finding, so a response shows at once
which datasets it drew from.
"""

from __future__ import annotations

from pathlib import Path

from cim.settings import Settings
from cim.store import DuckDBStore
from converters.pipes.ingest import SurveyOptions, ingest_survey

SAMPLE = Path(__file__).resolve().parents[3] / "sample_data" / "jinan_district"
SETTINGS = Settings(store="duckdb:///:memory:")
STORAGE = "EPSG:4548"
#: dataset id → (grade, secret, feature id prefix)
GRADED = {
    "general": ("一般", False, "G:"),
    "important": ("重要", False, "I:"),
    "core": ("核心", False, "C:"),
    "secret": ("一般", True, "S:"),
}
FEATURE_TABLES = ("pipe_points", "pipe_segments", "network_edges")


def build_graded_store() -> DuckDBStore:
    """The sample district ingested once, then copied under each graded dataset id (the original removed)."""
    store = DuckDBStore(":memory:")
    ingest_survey([SAMPLE], store, SurveyOptions(), SETTINGS)
    with store.transaction() as con:
        for ds, (grade, secret, prefix) in GRADED.items():
            con.execute("INSERT INTO datasets SELECT * REPLACE (? AS id, ? AS grade, ? AS secret) FROM datasets "
                        "WHERE id = 'jinan_district'", [ds, grade, secret])
            con.execute("INSERT INTO dataset_versions SELECT * REPLACE (? AS dataset_id) FROM dataset_versions "
                        "WHERE dataset_id = 'jinan_district'", [ds])
            for table in FEATURE_TABLES:
                con.execute(f"INSERT INTO {table} SELECT * REPLACE (? AS dataset_id, ? || feature_id AS feature_id) "
                            f"FROM {table} WHERE dataset_id = 'jinan_district'", [ds, prefix])
            con.execute("INSERT INTO network_nodes SELECT * REPLACE (? AS dataset_id) FROM network_nodes "
                        "WHERE dataset_id = 'jinan_district'", [ds])
            con.execute(
                """INSERT INTO qc_findings (dataset_id, version, rule_id, severity, file, row, feature_id, field, value,
                                            message, category, layer)
                   SELECT ?, 1, 'P-DEPTH', 'warning', 'secret/path/JSPOINT.csv', 7, feature_id, 'well_depth',
                          '9.87', 'well deeper than usual', category, 'JSPOINT'
                   FROM pipe_points WHERE dataset_id = ? ORDER BY feature_id LIMIT 1""", [ds, ds])
        for table in (*FEATURE_TABLES, "network_nodes", "dataset_versions"):
            con.execute(f"DELETE FROM {table} WHERE dataset_id = 'jinan_district'")
        con.execute("DELETE FROM datasets WHERE id = 'jinan_district'")
    return store
