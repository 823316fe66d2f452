"""Point clouds (LAS/LAZ 1.0–1.4, COPC) into the store: header checks, CRS and heights, 3D Tiles, queries.

* :mod:`converters.pointcloud.las` opens a file, refuses what cannot be read with a clear message and
  resolves its CRS (WKT or GeoTIFF keys, compound CRSs, vertical units) and height model;
* :mod:`converters.pointcloud.ingest` converts it (:mod:`tiles.pointcloud`) and records the catalogue entry;
* :mod:`converters.pointcloud.cli` is ``cim pointcloud ingest|info|query``.
"""
