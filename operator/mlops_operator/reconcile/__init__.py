"""Pure reconcilers: (spec, observed children, now) -> desired children + status."""
