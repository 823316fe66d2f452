"""Survey QC: a declarative rule catalogue, an engine that runs it over staged tables, reports."""
