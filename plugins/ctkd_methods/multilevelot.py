"""Built-in method plugin: multilevelot (being implemented; registers nothing yet)."""
