"""The SimPy serving engine: requests (entity), instances with their schedulers, routers, pools and transfers,
metrics. `lvlmsim.engine.api.simulate` is the entry point; the cost of every step comes from the cost model."""
