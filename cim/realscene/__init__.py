"""Real-scene 3D (实景三维): point clouds, DEM/DOM rasters, photogrammetry meshes and external tilesets.

The data stay in files under the deployment's assets folder; the store keeps their catalogue entries
(:func:`cim.realscene.catalogue.register`).
"""
