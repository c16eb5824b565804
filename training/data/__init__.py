"""Dataset loaders: each reads a local copy when given one and downloads otherwise."""
