"""OGC API – Features / Records over the store: collections, item queries, CQL2 filters, CRSs, catalogue.

Plain functions over a store (no HTTP); :mod:`api.ogc` serves them under ``/ogc``.

Example::

    reg, view = registry(store, "EPSG:4548")
    page = query_items(store, view, view.get("pipe-segments-js"), ItemsRequest(bbox="117.0,36.65,117.01,36.66"),
                       storage_crs="EPSG:4548", geoid=get_geoid("egm96"))
"""

from __future__ import annotations

from cim.features.collections import Collection, View, registry
from cim.features.query import ItemsRequest, Page, get_item, query_items

__all__ = ["Collection", "ItemsRequest", "Page", "View", "get_item", "query_items", "registry"]
