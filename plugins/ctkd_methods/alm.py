"""Built-in method plugin: alm (being implemented; registers nothing yet)."""
