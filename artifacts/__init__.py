"""Release artifacts: test data, tarballs, manifests, README tables, validation and release builds."""
