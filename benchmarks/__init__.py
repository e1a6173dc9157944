"""Speed benchmarks (``make bench``): the reference program against the project; not part of the package."""
