"""Offline tools around a run: memory planner, smoke runs, tiny model, demo, script converter, init."""
