"""CodeCapsule."""
