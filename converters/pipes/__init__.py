"""Underground pipe survey deliveries (CJJ 61-2017 point and line tables)."""
