"""Tool-call accuracy of a model: pure scoring (`scoring`) and torch generation (`generate`)."""
