"""Built-in method plugin: cdm (being implemented; registers nothing yet)."""
