"""The ports: Store, Bus, Output. Each has an embedded adapter (shared/adapters) and an Azure one."""
