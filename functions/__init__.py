"""Thin trigger adapters: each turns a trigger (HTTP, Service Bus, timer) into one call on
:class:`shared.control.ControlPlane` and its result back. No decisions live here."""
