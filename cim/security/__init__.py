"""Security: roles and the data-access rule, API keys and tokens, the audit log."""
