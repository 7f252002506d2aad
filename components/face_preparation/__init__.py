"""The face-preparation library: photo bytes to the aligned crop a model sees (see README.md)."""
