"""The `fakefaces` command line, the top floor: it may import every other layer."""
