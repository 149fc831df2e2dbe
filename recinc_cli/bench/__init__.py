"""The streaming benchmark (``recinc replay``): test-then-train over slices of any log."""
