"""Real-scene meshes: oblique-photogrammetry OSGB productions, OBJ and PLY into 3D Tiles; existing tilesets
registered as they are."""
