"""The shared floor: the contracts and helpers every layer uses (see README.md)."""
