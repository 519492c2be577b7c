"""The composition root: settings, CLI, daemon lifecycle, HTTP server, broker and spool."""
