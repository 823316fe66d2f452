"""BIM in the store: model versions, spatial structure, elements with meshes, submissions and their checks."""
