"""wagate: a self-hosted, multi-session WhatsApp gateway."""

__version__ = "0.1.0"
