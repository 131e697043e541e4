"""Where recipes and suites live (the folder layout, suite files) and what recipe names mean."""
