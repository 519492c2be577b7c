"""The voice-of-the-customer report: what customers contact us about, computed in SQL.

`build` runs one read-only snapshot of the store through the sections (contacts, cases,
recurring problems, repeat contacts, responses against targets, closures, escalations,
incidents, self-service), each a few aggregate statements that return figures, never the
rows they count; `render` turns the figures into one self-contained HTML file (charts as
inline SVG) or CSV/JSON.
"""
