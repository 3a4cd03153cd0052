"""Release artifacts, one room per concern: release, validation, quantization and provenance."""
