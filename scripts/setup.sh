#!/usr/bin/env bash
# Prepare a fresh machine: system packages (geoid grid), a virtual environment with the project installed.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -f /usr/share/proj/egm96_15.gtx ] && [ -z "${CIM_GEOID_PATH:-}" ]; then
  echo "setup: installing Debian proj-data (EGM96 geoid grid)" >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq proj-data >/dev/null
fi

# Debian's Chromium for the viewer's real-browser test (driven by playwright-core; no browser download),
# with a small CJK font so the viewer's Chinese labels render in its screenshots.
if [ ! -x /usr/bin/chromium ]; then
  echo "setup: installing Debian chromium (headless browser for the viewer test)" >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium fonts-wqy-microhei >/dev/null
fi

# GDAL's command-line tools: the OGC API - Features test reads our service with the OAPIF driver (a real client).
if ! command -v ogrinfo >/dev/null 2>&1; then
  echo "setup: installing Debian gdal-bin (ogrinfo/ogr2ogr for the OGC API client test)" >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq gdal-bin >/dev/null
fi

# OpenSceneGraph's osgconv reads oblique-photogrammetry OSGB tiles; PostgreSQL 15 + PostGIS 3 for the server store.
if ! command -v osgconv >/dev/null 2>&1 || [ ! -x /usr/lib/postgresql/15/bin/initdb ]; then
  echo "setup: installing Debian openscenegraph, postgresql-15-postgis-3" >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq openscenegraph postgresql-15-postgis-3 >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v '^WARNING: Location' || true
.venv/bin/python -m pip install -q -e ".[dev]" 2>&1 | grep -v '^WARNING: Location' || true
.venv/bin/python -c "import cim, converters, tiles, api, duckdb_extension_spatial, meshopt, fastapi, rasterio, matplotlib, ifcopenshell, ifctester, bcf, cql2, jwt, multipart, laspy, lazrs, rio_tiler, quantized_mesh_encoder, pydelatin, psycopg, dask.distributed, hypothesis, plyfile, defusedxml, PIL"

# Node tooling for the tests (Khronos glTF validator), pinned by package-lock.json; no install scripts run.
if command -v npm >/dev/null 2>&1; then
  if ! npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null; then
    echo "setup: npm ci failed; the glTF validator and browser tests cannot run" >&2
    [ -n "${CI:-}" ] && exit 1
  fi
fi
