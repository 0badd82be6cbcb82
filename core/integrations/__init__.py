"""One module per external system; each is the only place that creates that system's client."""
