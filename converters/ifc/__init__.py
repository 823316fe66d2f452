"""IFC (IFC2X3, IFC4, IFC4X3) models into the store.

sniff → worker process (parse, georeference, attributes, geometry) → one store transaction.
"""
