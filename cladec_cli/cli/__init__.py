"""The `cladec` command line: a thin Click layer over the cladec_cli API."""
