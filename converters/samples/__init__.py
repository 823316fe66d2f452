"""Sample-data generators: synthetic but realistic deliveries for demos, tests and benchmarks.

``converters.samples.district`` writes a Jinan survey district (CJJ 61-2017 pipe tables, EPSG:4548,
1985 heights) as a contractor would deliver it, optionally with one injected defect per QC rule.
"""
