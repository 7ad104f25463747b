"""Built-in method plugin: vocagnolm (being implemented; registers nothing yet)."""
