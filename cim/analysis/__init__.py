"""Pipe network analyses for planners and emergency staff: excavation, sections, clearance, cover, isolation, tracing."""
