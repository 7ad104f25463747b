"""Built-in method plugin: uld (being implemented; registers nothing yet)."""
