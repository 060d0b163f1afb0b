"""Identity (pure): the content hashes that name images, and the digests that keep values out of records."""
