"""A toy shop for fp's demo: inventory (module-level state, a class with class attributes) and pricing."""
