"""Thin trigger adapters: each turns a trigger (HTTP, Service Bus, timer) into one call on
:class:`shared.usecases.control_plane.ControlPlane` and its result back. No decisions live here."""
