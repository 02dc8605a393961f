"""Reports: the docs' support table from measurement, the claims check, Markdown and the HTML page."""
