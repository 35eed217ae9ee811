"""Helpers shared by the explorer's pages: the sidebar setup, cached calls to the public API, formatting, charts.

Nothing here computes a cost: every number comes from `lvlmsim.estimate`, `lvlmsim.simulate` or the spec registry,
so anything a page shows can be reproduced from Python with the call printed under "Reproduce in Python".
"""
