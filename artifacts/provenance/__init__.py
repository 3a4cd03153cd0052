"""Provenance: release statements (in-toto/SLSA), lineage of models, signing and verification."""
