"""The `snn` command: a thin dispatcher over the components' own command modules."""
