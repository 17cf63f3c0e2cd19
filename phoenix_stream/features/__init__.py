"""Online features: the Redis store, the value codec, enrichment, and seeding."""
