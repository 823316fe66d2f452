"""GeoTIFF terrain (DEM) and orthophotos (DOM) into the real-scene catalogue (kind ``raster``)."""
