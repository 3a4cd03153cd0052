"""Release building: variants, test data, tarballs, the README table, the hub manifest and checksums."""
