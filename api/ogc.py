"""OGC API – Features (Parts 1–3) and Records under ``/ogc``: a thin web shell over :mod:`cim.features`.

Routes: ``/ogc`` (landing page), ``/ogc/conformance``, ``/ogc/collections``, ``/ogc/collections/{collectionId}``,
``.../items``, ``.../items/{featureId}``, ``.../queryables``; the records catalogue is the collection
``catalogue`` (``/ogc/collections/catalogue/items``). JSON or HTML by ``f=json|html`` or the ``Accept`` header.
Errors are OGC exception bodies ``{"code": ..., "description": ...}`` (400 for bad parameters, 404 for unknown
collections and items), produced by this router's own route class, so the app's error table is untouched.

The store comes from one dependency, :func:`ogc_store`; swap it (``app.dependency_overrides[ogc_store]``) to
serve a principal's :class:`ScopedStore` view.

Example::

    app.include_router(ogc_router())
    # ogrinfo -ro -so OAPIF:http://127.0.0.1:8000/ogc
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.routing import APIRoute
from pydantic import BaseModel

from api import ogc_html
from api.errors import status_for
from cim.errors import CIMError, InvalidInputError, NotFoundError
from cim.features.collections import CATALOGUE, Collection, View, registry
from cim.features.cql2 import CONFORMANCE as CQL2_CONFORMANCE
from cim.features.crs import CRS84, output_crs, supported_uris
from cim.features.query import (
    MAX_LIMIT,
    ItemsRequest,
    Page,
    clamp_limit,
    get_item,
    parse_datetime,
    query_items,
    time_stamp,
)
from cim.features.records import TILES_3D, Urls, get_record, search_records

GEOJSON = "application/geo+json"
JSON = "application/json"
HTML = "text/html"
SCHEMA_JSON = "application/schema+json"
OPENAPI = "application/vnd.oai.openapi+json;version=3.1"
REL = "http://www.opengis.net/def/rel/ogc/1.0/"

CONFORMANCE: tuple[str, ...] = (
    "http://www.opengis.net/spec/ogcapi-common-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-common-1/1.0/conf/landing-page",
    "http://www.opengis.net/spec/ogcapi-common-1/1.0/conf/json",
    "http://www.opengis.net/spec/ogcapi-common-1/1.0/conf/html",
    "http://www.opengis.net/spec/ogcapi-common-2/1.0/conf/collections",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/html",
    "http://www.opengis.net/spec/ogcapi-features-2/1.0/conf/crs",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/queryables",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/filter",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/features-filter",
    *CQL2_CONFORMANCE,
    "http://www.opengis.net/spec/ogcapi-records-1/1.0/conf/record-core",
    "http://www.opengis.net/spec/ogcapi-records-1/1.0/conf/record-collection",
    "http://www.opengis.net/spec/ogcapi-records-1/1.0/conf/records-api",
    "http://www.opengis.net/spec/ogcapi-records-1/1.0/conf/json",
    "http://www.opengis.net/spec/ogcapi-records-1/1.0/conf/html",
)
#: Query parameters the items operation knows (anything else is a 400, /req/core/query-param-unknown).
ITEMS_PARAMS = frozenset({"f", "bbox", "bbox-crs", "datetime", "limit", "offset", "filter", "filter-lang",
                          "filter-crs", "crs", "properties", "q", "type", "ids"})


class OGCException(BaseModel):
    """An OGC API exception body."""

    code: str
    description: str


ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": OGCException, "description": "Invalid parameter (bbox, crs, filter, datetime, limit ...)"},
    404: {"model": OGCException, "description": "Unknown collection or item"},
}


def _exception(status: int, code: str, description: str) -> Response:
    return Response(json.dumps({"code": code, "description": description}, ensure_ascii=False),
                    status_code=status, media_type=JSON)


class OGCRoute(APIRoute):
    """A route answering its errors with OGC exception bodies (validation errors are 400s, not 422s)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                problems = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ())[1:])}: {e.get('msg')}"
                                     for e in exc.errors())
                return _exception(400, "InvalidParameterValue", problems)
            except NotFoundError as exc:
                return _exception(404, "NotFound", str(exc))
            except InvalidInputError as exc:
                return _exception(400, "InvalidParameterValue", str(exc))
            except CIMError as exc:
                return _exception(status_for(exc), type(exc).__name__, str(exc))

        return route


# -- dependencies --------------------------------------------------------------------------------------------
async def ogc_store(request: Request) -> Any:
    """The store the OGC routes read (override to serve a security-scoped view).

    ``async`` only to spare a thread-pool hop per request: it does no I/O beyond opening the store once.
    """
    return request.app.state.services.store()


Store = Annotated[Any, Depends(ogc_store)]
Fmt = Annotated[str | None, Query(alias="f", pattern="^(json|html)$",
                                  description="Response format (default: from the Accept header, else JSON)")]
CollectionId = Annotated[str, Path(description="Collection id, see /ogc/collections")]


def _services(request: Request) -> Any:
    return request.app.state.services


def _view(request: Request, store: Any) -> View:
    svc = _services(request)
    return registry(store, svc.settings.storage_crs)[1]


def _urls(request: Request) -> Urls:
    site = str(request.base_url).rstrip("/")
    return Urls(site + "/ogc", site)


def _wants_html(request: Request, f: str | None) -> bool:
    if f is not None:
        return f == "html"
    accept = request.headers.get("accept", "")
    if not accept or "text/html" not in accept:
        return False
    html_q, json_q = _q(accept, ("text/html",)), _q(accept, ("application/json", "application/geo+json",
                                                              "application/schema+json"))
    return html_q > json_q


def _q(accept: str, types: tuple[str, ...]) -> float:
    best = 0.0
    for part in accept.split(","):
        bits = [b.strip() for b in part.split(";")]
        if bits[0] in types:
            q = 1.0
            for b in bits[1:]:
                if b.startswith("q="):
                    try:
                        q = float(b[2:])
                    except ValueError:
                        q = 0.0
            best = max(best, q)
    return best


def _json(body: Any, media_type: str, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(body, ensure_ascii=False, separators=(",", ":")), media_type=media_type,
                    headers=headers)


def _html(text: str) -> Response:
    return Response(text, media_type="text/html; charset=utf-8")


def _self_links(url: str, json_type: str, title: str) -> list[dict[str, Any]]:
    sep = "&" if "?" in url else "?"
    return [{"rel": "self", "type": json_type, "title": title, "href": url},
            {"rel": "alternate", "type": HTML, "title": f"{title} (HTML)", "href": f"{url}{sep}f=html"}]


# -- resources -----------------------------------------------------------------------------------------------
def _collection_body(view: View, c: Collection, urls: Urls, storage_crs: str) -> dict[str, Any]:
    href = f"{urls.ogc}/collections/{c.id}"
    links = _self_links(href, JSON, c.title)
    item_type = GEOJSON
    links += [{"rel": "items", "type": item_type, "title": "items", "href": f"{href}/items"},
              {"rel": "items", "type": HTML, "title": "items (HTML)", "href": f"{href}/items?f=html"}]
    body: dict[str, Any] = {"id": c.id, "title": c.title, "description": c.description, "itemType": c.item_type,
                            "keywords": list(c.keywords)}
    if c.source is not None:
        links.append({"rel": REL + "queryables", "type": SCHEMA_JSON, "title": "queryables",
                      "href": f"{href}/queryables"})
        body["crs"] = supported_uris(storage_crs)
        body["storageCrs"] = output_crs(storage_crs, storage_crs).uri
    for t in c.tilesets:  # 3D GeoVolumes style: the same content as a 3D Tiles 1.1 tileset
        links.append({"rel": "alternate", "type": TILES_3D, "title": "3D Tiles 1.1 tileset", "href": urls.site + t})
    if c.tilesets:
        body["content"] = [{"rel": "original", "type": TILES_3D, "title": "3D Tiles 1.1", "href": urls.site + t}
                           for t in c.tilesets]
    body["extent"] = view.extent(c)
    body["links"] = links
    return body


def _items_links(request: Request, page_next: bool, offset: int, limit: int, json_type: str) -> list[dict[str, Any]]:
    base = str(request.url).split("?", 1)[0]
    params = [(k, v) for k, v in request.query_params.multi_items() if k not in ("offset", "f")]
    links = _self_links(f"{base}?{urlencode(params + [('offset', offset)])}" if params or offset
                        else base, json_type, "this page")
    if page_next:
        links.append({"rel": "next", "type": json_type, "title": "next page",
                      "href": f"{base}?{urlencode(params + [('offset', offset + limit)])}"})
    if offset > 0:
        links.append({"rel": "prev", "type": json_type, "title": "previous page",
                      "href": f"{base}?{urlencode(params + [('offset', max(0, offset - limit))])}"})
    links.append({"rel": "collection", "type": JSON, "title": "the collection",
                  "href": base.rsplit("/items", 1)[0]})
    return links


def _page_body(page: Page, links: list[dict[str, Any]]) -> str:
    head = {"type": "FeatureCollection", "timeStamp": page.time_stamp, "numberReturned": page.number_returned}
    if page.number_matched is not None:
        head["numberMatched"] = page.number_matched
    head["links"] = links
    meta = json.dumps(head, ensure_ascii=False, separators=(",", ":"))
    return '{"features":[' + ",".join(f.to_json() for f in page.features) + "]," + meta[1:]


def _check_params(request: Request) -> None:
    unknown = sorted(set(request.query_params) - ITEMS_PARAMS)
    if unknown:
        raise InvalidInputError(f"unknown query parameter(s) {unknown} (known: {', '.join(sorted(ITEMS_PARAMS))})")


def ogc_router() -> APIRouter:
    """The ``/ogc`` router (OGC API – Features 1–3 and Records)."""
    router = APIRouter(prefix="/ogc", tags=["ogc"], route_class=OGCRoute, responses=ERRORS)

    @router.get("", operation_id="getLandingPage", summary="Landing page",
                responses={200: {"content": {JSON: {}, HTML: {}}}})
    def landing(request: Request, f: Fmt = None) -> Response:
        urls = _urls(request)
        body = {
            "title": "山东 CIM 三维空间数据服务 — OGC API",
            "description": "OGC API – Features (Parts 1–3) and Records over the CIM store: underground pipes, BIM "
                           "elements and dataset catalogue (CGCS2000, 1985 heights), with 3D Tiles links.",
            "links": [*_self_links(urls.ogc, JSON, "landing page"),
                      {"rel": "service-desc", "type": OPENAPI, "title": "OpenAPI definition",
                       "href": urls.site + request.app.openapi_url if request.app.openapi_url else urls.site},
                      {"rel": "service-doc", "type": HTML, "title": "API documentation", "href": urls.site + "/docs"},
                      {"rel": "conformance", "type": JSON, "title": "conformance", "href": urls.ogc + "/conformance"},
                      {"rel": REL + "conformance", "type": JSON, "title": "conformance",
                       "href": urls.ogc + "/conformance"},
                      {"rel": "data", "type": JSON, "title": "collections", "href": urls.ogc + "/collections"},
                      {"rel": REL + "data", "type": JSON, "title": "collections", "href": urls.ogc + "/collections"},
                      {"rel": "search", "type": GEOJSON, "title": "catalogue (OGC API – Records)",
                       "href": f"{urls.ogc}/collections/{CATALOGUE}/items"}],
        }
        return _html(ogc_html.landing(body)) if _wants_html(request, f) else _json(body, JSON)

    @router.get("/conformance", operation_id="getConformance", summary="Conformance classes",
                responses={200: {"content": {JSON: {}, HTML: {}}}})
    def conformance(request: Request, f: Fmt = None) -> Response:
        body = {"conformsTo": list(CONFORMANCE)}
        return _html(ogc_html.conformance(body)) if _wants_html(request, f) else _json(body, JSON)

    @router.get("/collections", operation_id="getCollections", summary="Feature and record collections",
                responses={200: {"content": {JSON: {}, HTML: {}}}})
    def collections(request: Request, store: Store, f: Fmt = None) -> Response:
        view, urls = _view(request, store), _urls(request)
        storage = _services(request).settings.storage_crs
        body = {"links": _self_links(urls.ogc + "/collections", JSON, "collections"),
                "crs": supported_uris(storage),
                "collections": [_collection_body(view, c, urls, storage) for c in view.collections.values()]}
        return _html(ogc_html.collections(body)) if _wants_html(request, f) else _json(body, JSON)

    @router.get("/collections/{collectionId}", operation_id="describeCollection", summary="One collection",
                responses={200: {"content": {JSON: {}, HTML: {}}}})
    def collection(request: Request, store: Store, collection_id: Annotated[str, Path(alias="collectionId")],
                   f: Fmt = None) -> Response:
        view = _view(request, store)
        body = _collection_body(view, view.get(collection_id), _urls(request), _services(request).settings.storage_crs)
        return _html(ogc_html.collection(body)) if _wants_html(request, f) else _json(body, JSON)

    @router.get("/collections/{collectionId}/queryables", operation_id="getQueryables",
                summary="Queryables of a collection (JSON Schema)",
                responses={200: {"content": {SCHEMA_JSON: {}, HTML: {}}}})
    def queryables(request: Request, store: Store, collection_id: Annotated[str, Path(alias="collectionId")],
                   f: Fmt = None) -> Response:
        view = _view(request, store)
        c = view.get(collection_id)
        if c.source is None:
            raise NotFoundError(f"{c.id!r} is a records collection: it has no queryables for filtering")
        href = f"{_urls(request).ogc}/collections/{c.id}/queryables"
        props: dict[str, Any] = {"geometry": {"title": "geometry", "format": "geometry-any",
                                              "x-ogc-role": "primary-geometry"}}
        props.update({q.name: q.schema() for q in c.queryables})
        body = {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": href, "type": "object",
                "title": c.title, "properties": props, "additionalProperties": False}
        return _html(ogc_html.queryables(body)) if _wants_html(request, f) else _json(body, SCHEMA_JSON)

    @router.get("/collections/{collectionId}/items", operation_id="getFeatures",
                summary="Items of a collection (features, or records of the catalogue)",
                responses={200: {"content": {GEOJSON: {}, HTML: {}},
                                 "headers": {"Content-Crs": {"description": "CRS of the coordinates",
                                                             "schema": {"type": "string"}}}}})
    def items(
        request: Request,
        store: Store,
        collection_id: Annotated[str, Path(alias="collectionId")],
        f: Fmt = None,
        bbox: Annotated[str | None, Query(description="minx,miny,maxx,maxy (or 6 values with heights), in the "
                                                      "axis order of bbox-crs (default CRS84: lon,lat)",
                                          max_length=400)] = None,
        bbox_crs: Annotated[str | None, Query(alias="bbox-crs", description="CRS of bbox (URI)",
                                              max_length=200)] = None,
        datetime: Annotated[str | None, Query(description="RFC 3339 instant or interval start/end ('..' open): "
                                                          "rows valid at that time (default: current)",
                                              max_length=100)] = None,
        limit: Annotated[int, Query(ge=1, description=f"Page size (default 10); values above {MAX_LIMIT} are "
                                                      "clamped to it")] = 10,
        offset: Annotated[int, Query(ge=0, le=10**12, description="Items to skip (paging)")] = 0,
        filter: Annotated[str | None, Query(description="CQL2 filter (text or JSON, see filter-lang)",
                                            max_length=20_000)] = None,
        filter_lang: Annotated[str | None, Query(alias="filter-lang", pattern="^(cql2-text|cql2-json)$",
                                                 description="cql2-text (default) or cql2-json")] = None,
        filter_crs: Annotated[str | None, Query(alias="filter-crs", description="CRS of geometries in the filter "
                                                                              "(default CRS84)",
                                                max_length=200)] = None,
        crs: Annotated[str | None, Query(description="Output CRS (URI); default CRS84", max_length=200)] = None,
        properties: Annotated[str | None, Query(description="Comma-separated properties to return",
                                                max_length=2000)] = None,
        q: Annotated[str | None, Query(description="Records only: comma-separated search terms",
                                       max_length=500)] = None,
        type: Annotated[str | None, Query(description="Records only: record types (dataset, service)",
                                          max_length=200)] = None,
        ids: Annotated[str | None, Query(description="Records only: comma-separated record ids",
                                         max_length=4000)] = None,
    ) -> Response:
        _check_params(request)
        view = _view(request, store)
        c = view.get(collection_id)
        if c.source is None:
            return _records(request, view, c, f, bbox=bbox, bbox_crs=bbox_crs, when=datetime, limit=limit,
                            offset=offset, q=q, types=type, ids=ids, other=(filter, crs, properties))
        if q is not None or type is not None or ids is not None:
            raise InvalidInputError("q, type and ids apply to the records catalogue only; use filter here")
        svc = _services(request)
        page = query_items(store, view, c, ItemsRequest(
            bbox=bbox, bbox_crs=bbox_crs, datetime=datetime, limit=limit, offset=offset, filter=filter,
            filter_lang=filter_lang, filter_crs=filter_crs, crs=crs, properties=properties,
        ), storage_crs=svc.settings.storage_crs, geoid=svc.geoid)
        html = _wants_html(request, f)
        links = _items_links(request, page.has_next, page.offset, page.limit, HTML if html else GEOJSON)
        headers = {"Content-Crs": f"<{page.crs.uri}>"}
        if html:
            body = json.loads(_page_body(page, links))
            return Response(ogc_html.items(body, c.title, f"{_urls(request).ogc}/collections/{c.id}/items"),
                            media_type="text/html; charset=utf-8", headers=headers)
        return Response(_page_body(page, links), media_type=GEOJSON, headers=headers)

    @router.get("/collections/{collectionId}/items/{featureId}", operation_id="getFeature",
                summary="One item", responses={200: {"content": {GEOJSON: {}, HTML: {}}}})
    def item(
        request: Request,
        store: Store,
        collection_id: Annotated[str, Path(alias="collectionId")],
        feature_id: Annotated[str, Path(alias="featureId")],
        f: Fmt = None,
        crs: Annotated[str | None, Query(description="Output CRS (URI); default CRS84", max_length=200)] = None,
    ) -> Response:
        view, urls = _view(request, store), _urls(request)
        c = view.get(collection_id)
        base = f"{urls.ogc}/collections/{c.id}"
        if c.source is None:
            body = get_record(view, feature_id, urls)
            crs_header = CRS84
        else:
            svc = _services(request)
            feat = get_item(store, view, c, feature_id, crs=crs, storage_crs=svc.settings.storage_crs,
                            geoid=svc.geoid)
            body = feat.to_dict()
            crs_header = output_crs(crs or CRS84, svc.settings.storage_crs).uri
            query = f"?{urlencode([('crs', crs)])}" if crs else ""
            body["links"] = [*_self_links(f"{base}/items/{feature_id}{query}", GEOJSON, "this item"),
                             {"rel": "collection", "type": JSON, "title": c.title, "href": base}]
        headers = {"Content-Crs": f"<{crs_header}>"}
        if _wants_html(request, f):
            return Response(ogc_html.item(body), media_type="text/html; charset=utf-8", headers=headers)
        return _json(body, GEOJSON, headers)

    return router


def _records(request: Request, view: View, c: Collection, f: str | None, *, bbox: str | None, bbox_crs: str | None,
             when: str | None, limit: int, offset: int, q: str | None, types: str | None, ids: str | None,
             other: tuple[Any, ...]) -> Response:
    if any(v is not None for v in other):
        raise InvalidInputError("filter, crs and properties are not supported on the records catalogue "
                                "(use bbox, datetime, q, type, ids)")
    if bbox_crs is not None and output_crs(bbox_crs, _services(request).settings.storage_crs).code != "OGC:CRS84":
        raise InvalidInputError("the catalogue takes bbox in CRS84 only", field="bbox-crs")
    urls = _urls(request)
    limit = clamp_limit(limit)
    found = search_records(view, urls, bbox=bbox, when=parse_datetime(when) if when else None, q=q, types=types,
                           ids=ids)
    page = found[offset:offset + limit]
    html = _wants_html(request, f)
    body = {"type": "FeatureCollection", "features": page, "numberMatched": len(found),
            "numberReturned": len(page), "timeStamp": time_stamp(),
            "links": _items_links(request, offset + limit < len(found), offset, limit, HTML if html else GEOJSON)}
    if html:
        return _html(ogc_html.items(body, c.title, f"{urls.ogc}/collections/{c.id}/items"))
    return _json(body, GEOJSON, {"Content-Crs": f"<{CRS84}>"})


__all__ = ["CONFORMANCE", "OGCRoute", "ogc_router", "ogc_store"]
