"""The course's diagnostics, drift comparisons, timing, the dependency check, notifications."""
