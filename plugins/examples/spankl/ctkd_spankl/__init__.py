"""ctkd-spankl: the example third-party method plugin of ctkd-bench (see docs/plugins.md)."""
