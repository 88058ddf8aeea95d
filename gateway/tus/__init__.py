"""tus 1.0.0 resumable uploads: core, creation, creation-with-upload, termination, checksum, expiration."""
