"""Underground pipe network domain (CJJ 61-2017): fields, dictionaries, codes, sections, geometry."""
