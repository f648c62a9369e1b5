"""What to run: the matrix (engines x models x scenarios) and the scenario files, validated."""
