"""Network-model readers (EPANET, SWMM 5) as pipe sources.

Each reader turns a hydraulic model into the same *raw* canonical point and line tables the survey
readers deliver (see :mod:`cim.pipes.staging`), so models go through the same normalisation, QC and
store. Model elevations become 1985 heights and local map coordinates become storage-ready numbers
through a user-given offset and scale; raw ``x`` is the northing and raw ``y`` the easting.
"""

from converters.network.model import NetworkTables

__all__ = ["NetworkTables"]
