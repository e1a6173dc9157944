"""Speed benchmarks (``make bench``): the seed reference against the project; not part of the package."""
