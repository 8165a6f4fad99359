"""The ports: Store, Bus and BusAdmin, Output, Compute. Each has an embedded adapter and an
Azure one (shared/adapters), and one contract suite both pass (tests/contract)."""
