"""Readers that turn delivered files into the service's staging tables."""
