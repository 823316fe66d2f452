"""OGC 3D Tiles 1.1 writers reading only the store (pipe network, buildings, point clouds)."""
