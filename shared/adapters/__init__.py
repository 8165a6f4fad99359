"""Adapters of the ports, each beside its Azure twin: SQLite store and bus, local output
folder and local compute (the embedded default: nothing but Python); Cosmos DB, Service Bus,
Blob storage and Azure VMs (HPC_STORE, HPC_BUS, HPC_OUTPUT, HPC_COMPUTE choose; wiring.py)."""
