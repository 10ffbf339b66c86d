"""Ranking passages for a query: filters, typo-tolerant query terms, hybrid fusion, duplicate collapsing."""
