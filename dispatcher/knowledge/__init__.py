"""The knowledge base: Markdown articles, a fuzzy multilingual index, and how often each
article was suggested, shown and accepted."""
