"""The FastAPI web service (OGC API – Features, 3D Tiles, analyses, viewer): a thin shell over ``cim``."""
