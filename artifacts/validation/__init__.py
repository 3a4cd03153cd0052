"""Validation: numerical parity of released models against their test data, on independent runtimes."""
