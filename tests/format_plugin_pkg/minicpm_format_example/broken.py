"""An entry point that cannot be imported (tests that a broken plugin is reported, not fatal)."""

raise ImportError("this example plugin is broken on purpose")
