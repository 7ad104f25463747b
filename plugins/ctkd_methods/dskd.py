"""Built-in method plugin: dskd (being implemented; registers nothing yet)."""
