"""The built-in ctkd-bench methods. Each module is a plugin registered through an entry point."""
