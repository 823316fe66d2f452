"""CIM 3D spatial data service core: settings, errors, CRS and heights, the spatial store.

The core never imports the web framework nor the other top-level packages
(``converters``, ``tiles``, ``api``); they build on it.
"""

__version__ = "0.1.0"
