"""Built-in method plugin: mined (being implemented; registers nothing yet)."""
