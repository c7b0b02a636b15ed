"""An app whose import fails (the supervisor must stop with exit status 3, not respawn)."""

raise RuntimeError("sup_broken cannot be imported")
