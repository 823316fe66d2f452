#!/usr/bin/env bash
# The main job on the embedded default store: ingest the sample Jinan district with survey QC.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export CIM_STORE="${CIM_STORE:-duckdb:///out/cim.duckdb}"
mkdir -p out
.venv/bin/cim demo --out out "$@"
